"""fieldlink bridge: gateway serial <-> SQLite store-and-forward <-> MQTT / Home Assistant, web page.

Library entry points: :class:`~fieldlink_host.bridge.core.Bridge` and
:func:`~fieldlink_host.bridge.config.load_config`. See docs/bridge.md.
"""

from fieldlink_host.bridge.config import BridgeConfig, MqttConfig, WebConfig, load_config
from fieldlink_host.bridge.core import Bridge

__all__ = ["Bridge", "BridgeConfig", "MqttConfig", "WebConfig", "load_config"]
