"""fieldlink bridge: gateway serial <-> SQLite store-and-forward <-> MQTT / Home Assistant, web page.

Library entry points: :class:`fieldlink_host.bridge.core.Bridge` and
:func:`fieldlink_host.bridge.config.load_config`. See docs/bridge.md. (Nothing is imported here, so the
package's modules import each other without a cycle through it.)
"""
