"""MQTT topic names and payload builders, including Home Assistant discovery (docs/bridge.md).

Topic root (versioned): ``{base_topic}/v1/{site}``; per device ``{root}/{device}/...`` where ``device``
is the node's MAC (12 hex digits, stable across renames); the bridge's own topics are
``{root}/bridge/...`` (Zigbee2MQTT style). Discovery follows Home Assistant's documented MQTT discovery
schema: ``{discovery_prefix}/{component}/{node_id}/{object_id}/config``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from fieldlink_host import __version__

ORIGIN = {"name": "fieldlink", "sw_version": __version__,
          "support_url": "https://github.com/fieldlink/fieldlink"}

#: quantity -> (device_class, unit_of_measurement, state_class); None device_class = generic sensor
QUANTITIES: dict[str, tuple[str | None, str | None, str | None]] = {
    "temperature": ("temperature", "°C", "measurement"),
    "relative_humidity": ("humidity", "%", "measurement"),
    "humidity": ("humidity", "%", "measurement"),
    "pressure": ("pressure", "hPa", "measurement"),
    "lux": ("illuminance", "lx", "measurement"),
    "illuminance": ("illuminance", "lx", "measurement"),
    "co2": ("carbon_dioxide", "ppm", "measurement"),
    "battery": ("battery", "%", "measurement"),
    "voltage": ("voltage", "V", "measurement"),
    "volts": ("voltage", "V", "measurement"),
    "moisture": ("moisture", "%", "measurement"),
    "soil_moisture": ("moisture", "%", "measurement"),
    "current": ("current", "A", "measurement"),
    "power": ("power", "W", "measurement"),
    "energy": ("energy", "kWh", "total_increasing"),
}

_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def safe(part: str) -> str:
    """A topic level / object id without MQTT wildcards, separators or spaces."""
    return _SAFE.sub("_", part) or "_"


@dataclass(frozen=True)
class Topics:
    base_topic: str = "fieldlink"
    site: str = "farm"
    discovery_prefix: str = "homeassistant"
    bridge_id: str = "bridge"

    @property
    def root(self) -> str:
        return f"{self.base_topic}/v1/{safe(self.site)}"

    def device(self, mac: str) -> str:
        return f"{self.root}/{safe(mac)}"

    def telemetry(self, mac: str, sensor: str) -> str:
        return f"{self.device(mac)}/telemetry/{safe(sensor)}"

    def event(self, mac: str) -> str:
        return f"{self.device(mac)}/event"

    def status(self, mac: str) -> str:
        return f"{self.device(mac)}/status"

    def state(self, mac: str) -> str:
        return f"{self.device(mac)}/state"

    def cmd(self, mac: str) -> str:
        return f"{self.device(mac)}/cmd"

    def ack(self, mac: str) -> str:
        return f"{self.device(mac)}/ack"

    def bridge(self, sub: str) -> str:
        return f"{self.root}/bridge/{sub}"

    @property
    def cmd_filter(self) -> str:
        return f"{self.root}/+/cmd"

    @property
    def request_filter(self) -> str:
        return f"{self.root}/bridge/request/#"

    def parse_cmd(self, topic: str) -> str | None:
        """The device of a ``.../{device}/cmd`` topic, or None."""
        prefix = self.root + "/"
        if not topic.startswith(prefix) or not topic.endswith("/cmd"):
            return None
        dev = topic[len(prefix):-len("/cmd")]
        return dev if dev and "/" not in dev and dev != "bridge" else None

    # ------------------------------------------------------------------ Home Assistant discovery
    def gateway_identifier(self) -> str:
        return f"fieldlink_gw_{safe(self.site)}_{safe(self.bridge_id)}"

    def node_identifier(self, mac: str) -> str:
        return f"fieldlink_{safe(mac)}"

    def discovery_topic(self, component: str, node_id: str, object_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/{safe(node_id)}/{safe(object_id)}/config"

    def _bridge_availability(self) -> dict[str, Any]:
        return {"topic": self.bridge("state"), "value_template": "{{ value_json.state }}",
                "payload_available": "online", "payload_not_available": "offline"}

    def gateway_discovery(self, gw: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The gateway's device (entities on ``bridge/info``); published before any node names it in
        ``via_device``."""
        ident = self.gateway_identifier()
        device = {"identifiers": [ident], "name": str(gw.get("name") or f"fieldlink gateway {self.bridge_id}"),
                  "manufacturer": "fieldlink", "model": str(gw.get("board") or "fieldlink gateway"),
                  "sw_version": str(gw.get("fw") or "unknown")}
        out = []
        for key, name, extra in (
                ("nodes", "Nodes", {"state_class": "measurement", "icon": "mdi:access-point-network"}),
                ("ring_dropped", "Uplink ring dropped", {"state_class": "total_increasing",
                                                          "entity_category": "diagnostic"}),
                ("mqtt_dropped", "Backlog dropped", {"state_class": "total_increasing",
                                                     "entity_category": "diagnostic"}),
                ("backlog", "MQTT backlog", {"state_class": "measurement", "entity_category": "diagnostic"})):
            cfg: dict[str, Any] = {
                "name": name, "unique_id": f"{ident}_{key}",
                "state_topic": self.bridge("info"), "value_template": f"{{{{ value_json.{key} }}}}",
                "availability": [self._bridge_availability()], "device": device, "origin": ORIGIN, **extra}
            out.append((self.discovery_topic("sensor", ident, key), cfg))
        sw = {"name": "Permit join", "unique_id": f"{ident}_permit_join",
              "state_topic": self.bridge("info"),
              "value_template": "{{ 'ON' if value_json.permit_join else 'OFF' }}",
              "command_topic": self.bridge("request/permit_join"),
              "payload_on": json.dumps({"value": True, "time": 254}),
              "payload_off": json.dumps({"value": False}), "state_on": "ON", "state_off": "OFF",
              "entity_category": "config", "availability": [self._bridge_availability()],
              "device": device, "origin": ORIGIN}
        out.append((self.discovery_topic("switch", ident, "permit_join"), sw))
        return out

    def node_discovery(self, mac: str, info: dict[str, Any], expire_after: int
                       ) -> list[tuple[str, dict[str, Any]]]:
        """Entities of one node: a sensor per (sensor, quantity) seen, a switch per relay, diagnostics."""
        ident = self.node_identifier(mac)
        device = {"identifiers": [ident], "name": str(info.get("name") or mac),
                  "manufacturer": "fieldlink", "model": str(info.get("board") or info.get("role") or "fieldlink node"),
                  "sw_version": str(info.get("app") or info.get("fw") or "unknown"),
                  "connections": [["mac", ":".join(mac[i:i + 2] for i in range(0, 12, 2))]],
                  "via_device": self.gateway_identifier()}
        avail = [self._bridge_availability(),
                 {"topic": self.status(mac), "payload_available": "online", "payload_not_available": "offline"}]
        common = {"availability": avail, "availability_mode": "all", "device": device, "origin": ORIGIN}
        out: list[tuple[str, dict[str, Any]]] = []
        for sensor, quantities in sorted(dict(info.get("sensors") or {}).items()):
            for q in sorted(quantities):
                dc, unit, sc = QUANTITIES.get(q, (None, None, "measurement"))
                oid = f"{ident}_{safe(sensor)}_{safe(q)}"
                cfg: dict[str, Any] = {
                    "name": f"{sensor} {q.replace('_', ' ')}", "unique_id": oid,
                    "state_topic": self.telemetry(mac, sensor),
                    "value_template": f"{{{{ value_json.values.{q} }}}}",
                    "expire_after": expire_after, **common}
                if dc:
                    cfg["device_class"] = dc
                if unit:
                    cfg["unit_of_measurement"] = unit
                if sc:
                    cfg["state_class"] = sc
                out.append((self.discovery_topic("sensor", ident, f"{sensor}_{q}"), cfg))
        for relay in sorted(dict(info.get("relays") or {})):
            oid = f"{ident}_relay_{safe(relay)}"
            out.append((self.discovery_topic("switch", ident, f"relay_{relay}"), {
                "name": f"Relay {relay}", "unique_id": oid,
                "state_topic": self.state(mac),
                "value_template": f"{{{{ value_json.relays.{relay} }}}}",
                "command_topic": self.cmd(mac),
                "payload_on": json.dumps({"op": "relay", "a": {"name": relay, "op": "on"}}),
                "payload_off": json.dumps({"op": "relay", "a": {"name": relay, "op": "off"}}),
                "state_on": "ON", "state_off": "OFF", "qos": 1, **common}))
        diags: list[tuple[str, str, dict[str, Any]]] = [
            ("rssi", "RSSI", {"device_class": "signal_strength", "unit_of_measurement": "dBm",
                              "state_class": "measurement"}),
            ("uptime", "Uptime", {"device_class": "duration", "unit_of_measurement": "s",
                                  "state_class": "total_increasing"}),
            ("last_seen", "Last seen", {"device_class": "timestamp"}),
            ("tel_fail", "Telemetry failures", {"state_class": "total_increasing"}),
            ("crashes", "Task crashes", {"state_class": "total_increasing"}),
        ]
        if "battery" in info:
            diags.append(("battery", "Battery", {"device_class": "battery", "unit_of_measurement": "%",
                                                 "state_class": "measurement"}))
        for key, name, extra in diags:
            oid = f"{ident}_{key}"
            out.append((self.discovery_topic("sensor", ident, key), {
                "name": name, "unique_id": oid, "state_topic": self.state(mac),
                "value_template": f"{{{{ value_json.{key} }}}}", "entity_category": "diagnostic",
                "expire_after": expire_after, **extra, **common}))
        return out

    # ------------------------------------------------------------------ OTA (bridge/ota.py)
    def ota_request(self, action: str) -> str:
        return self.bridge(f"request/device/ota_update/{action}")

    def update_discovery(self, mac: str, info: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The node's Home Assistant ``update`` entity (MQTT update platform): versions and progress from
        the ``update`` object of the node's state topic, install = the Zigbee2MQTT-style update request.
        ``value_json['update']`` (not ``value_json.update``: Jinja would find the dict method first)."""
        ident = self.node_identifier(mac)
        device = {"identifiers": [ident], "name": str(info.get("name") or mac),
                  "manufacturer": "fieldlink", "model": str(info.get("board") or info.get("role") or "fieldlink node"),
                  "sw_version": str(info.get("app") or info.get("fw") or "unknown"),
                  "connections": [["mac", ":".join(mac[i:i + 2] for i in range(0, 12, 2))]],
                  "via_device": self.gateway_identifier()}
        avail = [self._bridge_availability(),
                 {"topic": self.status(mac), "payload_available": "online", "payload_not_available": "offline"}]
        u = "value_json['update']"
        cfg: dict[str, Any] = {
            "name": "Firmware", "unique_id": f"{ident}_update", "device_class": "firmware",
            "entity_category": "config", "state_topic": self.state(mac),
            "value_template": ("{{ {'installed_version': " + u + "['installed_version'], 'latest_version': " + u
                               + "['latest_version'], 'in_progress': " + u + "['state'] == 'updating', "
                               "'update_percentage': " + u + ".get('progress')} | to_json }}"),
            "json_attributes_topic": self.state(mac), "json_attributes_template": "{{ " + u + " | to_json }}",
            "command_topic": self.ota_request("update"), "payload_install": json.dumps({"id": mac}),
            "qos": 1, "availability": avail, "availability_mode": "all", "device": device, "origin": ORIGIN}
        return self.discovery_topic("update", ident, "firmware"), cfg
