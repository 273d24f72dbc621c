"""Bridge configuration: defaults < TOML file < environment (``FIELDLINK_BRIDGE_*``) < command line.

TOML layout (all keys optional, docs/bridge.md "Configuration")::

    port = "/dev/fieldlink-gw"
    db = "/var/lib/fieldlink/farm.db"
    site = "farm"
    bridge_id = "pi-shed"
    [mqtt]
    url = "mqtts://broker.lan:8883"
    username = "fieldlink"
    password = "..."              # or FIELDLINK_BRIDGE_MQTT_PASSWORD
    ca = "/etc/fieldlink/ca.pem"
    cert = "/etc/fieldlink/client.pem"
    key = "/etc/fieldlink/client.key"
    [web]
    listen = "127.0.0.1:8080"
    user = "admin"
    password = "..."              # or token = "..."
    [retention]
    hours = 72
    max_mb = 512
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fieldlink_host.errors import FieldlinkError

ENV_PREFIX = "FIELDLINK_BRIDGE_"


@dataclass
class MqttConfig:
    url: str | None = None
    username: str | None = None
    password: str | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    client_id: str | None = None
    keepalive: int = 30
    inflight: int = 200
    #: publish from a process of its own (bridge/pubproc.py): paho then runs on another core
    process: bool = True

    def endpoint(self) -> tuple[str, int, bool]:
        """(host, port, tls) of ``mqtt://host[:1883]`` or ``mqtts://host[:8883]``."""
        if not self.url:
            raise FieldlinkError("mqtt: no broker URL configured")
        u = urlsplit(self.url)
        if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
            raise FieldlinkError(f"mqtt: {self.url!r} is not mqtt://host[:port] or mqtts://host[:port]")
        tls = u.scheme == "mqtts"
        try:
            port = u.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise FieldlinkError(f"mqtt: bad port in {self.url!r}") from exc
        if u.username and not self.username:
            self.username = u.username
        if u.password and not self.password:
            self.password = u.password
        return u.hostname, port, tls


@dataclass
class WebConfig:
    listen: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None

    def host_port(self) -> tuple[str, int]:
        if not self.listen:
            raise FieldlinkError("web: no listen address")
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit():
            raise FieldlinkError(f"web: {self.listen!r} is not HOST:PORT")
        return host.strip("[]") or "127.0.0.1", int(port)

    def needs_auth(self) -> bool:
        return not is_loopback(self.host_port()[0])

    def has_credentials(self) -> bool:
        return bool(self.token) or bool(self.user and self.password)


def is_loopback(host: str) -> bool:
    """Only 127.0.0.1 / ::1 / localhost are served without authentication (issue: "any address other
    than 127.0.0.1 requires authentication"; other 127.x addresses included, they are reachable by
    other local users just the same)."""
    if host in ("localhost",):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return str(ip) in ("127.0.0.1", "::1")


@dataclass
class BridgeConfig:
    port: str | None = None
    db: str | None = None
    baud: int = 921600
    site: str = "farm"
    bridge_id: str = field(default_factory=lambda: "bridge-" + socket.gethostname().split(".")[0])
    base_topic: str = "fieldlink"
    discovery_prefix: str = "homeassistant"
    discovery: bool = True
    heartbeat_s: int = 30
    cmd_timeout_s: float = 30.0
    anomaly_window: int = 30
    anomaly_z: float = 4.0
    synchronous: str = "FULL"
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    web: WebConfig = field(default_factory=WebConfig)
    retention_hours: float = 72.0
    retention_max_mb: float = 512.0
    #: OTA through the bridge (docs/bridge.md "OTA"): directory of signed packages (`fieldlink ota make`),
    #: owner public key(s) the packages must be signed with (comma-separated files), rollout state directory
    #: (default: next to the db), per-node timeouts of the rollout engine
    ota_dir: str | None = None
    ota_key: str | None = None
    ota_state_dir: str | None = None
    ota_confirm_timeout_s: float = 300.0
    ota_timeout_s: float = 3600.0

    def check(self) -> None:
        if not self.db:
            raise FieldlinkError("bridge: --db FILE is required")
        if self.web.listen:
            self.web.host_port()
            if self.web.needs_auth() and not self.web.has_credentials():
                raise FieldlinkError(f"web: listening on {self.web.listen} (beyond 127.0.0.1) needs "
                                     "authentication: set [web] user+password or token")
        if self.mqtt.url:
            self.mqtt.endpoint()


def _set(obj: Any, key: str, value: Any, where: str) -> None:
    names = {f.name: f for f in fields(obj)}
    if key not in names:
        raise FieldlinkError(f"{where}: unknown setting {key!r}")
    cur = getattr(obj, key)
    try:
        if isinstance(cur, bool):
            value = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
        elif isinstance(cur, int) and not isinstance(value, int):
            value = int(value)
        elif isinstance(cur, float):
            value = float(value)
    except ValueError as exc:
        raise FieldlinkError(f"{where}: {key} = {value!r} is not a number") from exc
    setattr(obj, key, value)


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None,
                **overrides: Any) -> BridgeConfig:
    cfg = BridgeConfig()
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except OSError as exc:
            raise FieldlinkError(f"{p}: cannot read: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise FieldlinkError(f"{p}: {exc}") from exc
        for k, v in data.items():
            if k in ("mqtt", "web") and isinstance(v, dict):
                for k2, v2 in v.items():
                    _set(getattr(cfg, k), k2, v2, f"{p} [{k}]")
            elif k == "retention" and isinstance(v, dict):
                for k2, v2 in v.items():
                    _set(cfg, {"hours": "retention_hours", "max_mb": "retention_max_mb"}.get(k2) or k2, v2,
                         f"{p} [retention]")
            else:
                _set(cfg, k, v, str(p))
    environ = os.environ if env is None else env
    for k, v in environ.items():
        if not k.startswith(ENV_PREFIX):
            continue
        name = k[len(ENV_PREFIX):].lower()
        for sect in ("mqtt", "web"):
            if name.startswith(sect + "_"):
                _set(getattr(cfg, sect), name[len(sect) + 1:], v, f"${k}")
                break
        else:
            _set(cfg, name, v, f"${k}")
    for k, v in overrides.items():
        if v is None:
            continue
        if k.startswith(("mqtt_", "web_")):
            sect, _, name = k.partition("_")
            _set(getattr(cfg, sect), name, v, f"--{k}")
        else:
            _set(cfg, k, v, f"--{k}")
    return cfg
