"""The bridge: gateway serial port <-> SQLite <-> MQTT (docs/bridge.md).

Data path: the :class:`~fieldlink_host.uplink.UplinkClient` reader hands every chunk of new gateway
messages to :meth:`Bridge._on_messages`, which commits them (raw message, telemetry rows, outbox rows
for MQTT, device registry) in ONE SQLite transaction; only when that returns does the client send the
cumulative uplink ack. The MQTT :class:`~fieldlink_host.bridge.mqtt.Publisher` drains the outbox on its
own thread, so a slow or absent broker never blocks the serial side.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from fieldlink_host import __version__
from fieldlink_host.bridge.config import BridgeConfig
from fieldlink_host.bridge.mqtt import Publisher
from fieldlink_host.bridge.ota import REQUEST as OTA_REQUEST
from fieldlink_host.bridge.ota import BridgeOta
from fieldlink_host.bridge.pubproc import ProcessPublisher
from fieldlink_host.bridge.store import Store, now_ms
from fieldlink_host.bridge.topics import Topics
from fieldlink_host.errors import FieldlinkError
from fieldlink_host.uplink import UplinkClient, UplinkError

log = logging.getLogger("fieldlink.bridge")

#: node messages older than this (ms since 2020-09) are not a real epoch: use the host clock
EPOCH_MIN_MS = 1_600_000_000_000
#: compact JSON for MQTT payloads (one encoder, not one per message); payloads come from msgpack maps,
#: which cannot hold cycles
_JSON = json.JSONEncoder(separators=(",", ":"), check_circular=False)
#: seconds between saves of changed device registry rows (new devices are saved at once)
DEVICE_SAVE_S = 2.0


class SerialLike(Protocol):
    def read(self, n: int) -> bytes: ...
    def write(self, data: bytes) -> int | None: ...


PortSpec = str | Callable[[], SerialLike]


@functools.lru_cache(maxsize=1024)
def _iso_s(sec: int) -> str:
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def iso(ms: int) -> str:
    """ISO 8601 UTC with milliseconds (``2026-12-07T06:53:08.260Z``), integer exact."""
    sec, milli = divmod(int(ms), 1000)
    return f"{_iso_s(sec)}.{milli:03d}Z"


class RollingStats:
    """Mean and standard deviation over the last ``window`` values, O(1) per value (running sums)."""

    def __init__(self, window: int) -> None:
        self.values: deque[float] = deque()
        self.window = window
        self.s = 0.0
        self.s2 = 0.0

    def check_and_add(self, x: float, z: float, min_n: int = 10) -> tuple[bool, float, float]:
        """(anomalous?, mean, std) of x against the values before it; then x joins the window."""
        values = self.values
        n = len(values)
        anomalous, mean, std = False, x, 0.0
        if n:
            mean = self.s / n
            var = self.s2 / n - mean * mean
            std = math.sqrt(var) if var > 0.0 else 0.0
            floor = 1e-6 + 0.001 * abs(mean)   # a flat signal is not infinitely sensitive
            anomalous = n >= min_n and abs(x - mean) > z * (std if std > floor else floor)
        values.append(x)
        self.s += x
        self.s2 += x * x
        if n >= self.window:
            old = values.popleft()
            self.s -= old
            self.s2 -= old * old
        return anomalous, mean, std


@dataclass
class Pending:
    """One command sent to the gateway, waiting for its ``res``."""
    cid: int
    mac: str | None
    op: str
    args: dict[str, Any]
    corr: Any
    source: str                       # "mqtt" | "api" | "request:<name>" | "internal"
    deadline: float
    transaction: Any = None
    state: str = "sent"               # sent | queued | done | timeout | error
    result: dict[str, Any] | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def as_dict(self) -> dict[str, Any]:
        r = self.result or {}
        return {"id": self.cid, "corr": self.corr, "device": self.mac, "op": self.op, "state": self.state,
                "ok": bool(r.get("ok")) if self.state == "done" else False, "r": r.get("r"), "err": r.get("err")}


class Bridge:
    def __init__(self, cfg: BridgeConfig, port: PortSpec | None = None) -> None:
        cfg.check()
        self.cfg = cfg
        self.port: PortSpec | None = port if port is not None else cfg.port
        assert cfg.db is not None
        self.store = Store(cfg.db, cfg.synchronous)
        self.topics = Topics(cfg.base_topic, cfg.site, cfg.discovery_prefix, cfg.bridge_id)
        self.devices: dict[str, dict[str, Any]] = self.store.devices()
        self.gateway: dict[str, Any] = {"fw": None, "name": None, "boot": None, "permit_join": False,
                                        "permit_join_end": None, "connected": False, "ring_dropped": 0}
        self.counters: dict[str, int] = {k: 0 for k in (
            "uplink_messages", "uplink_duplicates", "tel_messages", "tel_duplicates", "readings", "events",
            "evt_duplicates",
            "anomalies", "commands", "command_timeouts", "bad_mqtt", "bad_requests", "sink_errors",
            "serial_reconnects", "serial_open_failures", "bad_uplink")}
        self.client: UplinkClient | None = None
        self.publisher: Publisher | ProcessPublisher | None = None
        self.pending: dict[int, Pending] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=200)
        self.commands_done: deque[dict[str, Any]] = deque(maxlen=200)
        self._stats: dict[tuple[str, str, str], RollingStats] = {}
        self._plock = threading.Lock()
        self._listeners: list[queue.Queue[dict[str, Any]]] = []
        self._llock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._devices_dirty = True
        self._info_dirty = True
        self.started = time.time()
        self.ota = BridgeOta(self)   # OTA requests, update state, HA update entity (bridge/ota.py)
        # per group commit (serial thread): node message keys seen for the first time, telemetry rows
        self._tel_new: set[tuple[str, int, int]] = set()
        self._evt_new: set[tuple[str, int, int]] = set()
        self._dev_dirty: set[str] = set()       # device rows not saved yet (serial thread)
        self._dev_new: set[str] = set()
        self._dev_saved = 0.0
        self._tel_rows: list[tuple[str, str, str, float | None, int, int]] = []
        self._tel_topics: dict[tuple[str, str], str] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Bridge:
        if self.cfg.mqtt.url:
            kw: dict[str, Any] = {
                "client_id": self.cfg.mqtt.client_id or f"fieldlink-{self.cfg.bridge_id}",
                "will_topic": self.topics.bridge("state"),
                "subscriptions": [self.topics.cmd_filter, self.topics.request_filter,
                                  f"{self.cfg.discovery_prefix}/status"],
                "on_message": self.handle_mqtt}
            if self.cfg.mqtt.process:
                self.publisher = ProcessPublisher(self.cfg.mqtt, self.store, synchronous=self.cfg.synchronous, **kw)
            else:
                self.publisher = Publisher(self.cfg.mqtt, self.store, **kw)
            self.publisher.start()
        if self.cfg.discovery:
            self._publish(self._gateway_discovery())   # before any node names it in via_device
        for t, name in ((self._serial_loop, "fl-bridge-serial"), (self._house_loop, "fl-bridge-house")):
            th = threading.Thread(target=t, name=name, daemon=True)
            th.start()
            self._threads.append(th)
        self.ota.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.ota.stop()
        for th in self._threads:
            th.join(3)
        if self.client is not None:
            self.client.close()
            self.client = None
        if self._dev_dirty:
            try:
                with self.store.tx():
                    self._save_devices(set(), force=True)
            except Exception:  # noqa: BLE001 - derived state; stopping must go on
                log.exception("bridge: saving the device registry failed")
        if self.publisher is not None:
            self.publisher.stop()
        self.store.close()

    def __enter__(self) -> Bridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ serial side
    def _open(self) -> UplinkClient:
        port = self.port
        if port is None:
            raise FieldlinkError("bridge: no gateway port configured")
        if isinstance(port, str):
            client = UplinkClient(port, self.cfg.baud, on_messages=self._on_messages, dedup_telemetry=False)
        else:
            try:
                ser = port()
            except OSError as exc:
                raise UplinkError(f"cannot open the gateway port: {exc}") from exc
            client = UplinkClient(ser, self.cfg.baud, on_messages=self._on_messages,  # type: ignore[arg-type]
                                  dedup_telemetry=False)   # the store dedups (from, boot, q) durably
        st = self.store.resume_state()
        if st is not None:   # what is stored counts as received: older resends are new, stored ones repeats
            client.resume(*st)
        return client.open()

    def _serial_loop(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            c = self.client
            if c is None:
                try:
                    c = self._open()
                except (UplinkError, OSError) as exc:
                    self.counters["serial_open_failures"] += 1
                    if self.counters["serial_open_failures"] in (1, 10, 100) or backoff >= 2:
                        log.warning("bridge: %s (retrying)", exc)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                backoff = 0.2
                self.client = c
                self.gateway["connected"] = True
                self._info_dirty = True
                self._broadcast({"type": "gateway", "connected": True})
                try:   # a gateway that just came back (or first contact) gets the host's time
                    self.command(None, "time_sync", {"ts": now_ms()}, source="internal")
                    self.command(None, "status", {}, source="internal")   # fw, ring_dropped, counters
                except FieldlinkError:
                    pass
            elif c.read_failures >= 3:
                log.warning("bridge: gateway port vanished; reconnecting")
                self.counters["serial_reconnects"] += 1
                self.client = None
                self.gateway["connected"] = False
                self._info_dirty = True
                self._broadcast({"type": "gateway", "connected": False})
                try:
                    c.close()
                except Exception:  # noqa: BLE001 - the port is gone; nothing useful to report
                    pass
                continue
            self._stop.wait(0.1)

    def _on_messages(self, msgs: list[dict[str, Any]]) -> None:
        """Called by the uplink reader BEFORE it acknowledges ``msgs`` (everything the port held: a group
        commit): store and derive all of them in one transaction with a fixed number of statements, one
        commit, then return."""
        rx = now_ms()
        out: list[tuple[str, dict[str, Any] | str, bool]] = []
        live: list[dict[str, Any]] = []
        done: list[Pending] = []
        changed: set[str] = set()
        try:
            with self.store.tx():
                fresh = self.store.insert_uplinks(msgs, rx)
                new = [m for m, f in zip(msgs, fresh, strict=True) if f]
                self.counters["uplink_duplicates"] += len(msgs) - len(new)
                self.counters["uplink_messages"] += len(new)
                self._tel_new = self.store.insert_dedup("teldedup", self._node_keys(new, "tel", "q"), rx)
                self._evt_new = self.store.insert_dedup("evtdedup", self._node_keys(new, "evt", "e"), rx)
                self._tel_rows = []
                for m in new:
                    self._derive(m, rx, out, live, done, changed)
                self.store.insert_telemetry(self._tel_rows)
                self._save_devices(changed)
                self._enqueue(out, rx)
        except Exception:
            self.counters["sink_errors"] += 1
            log.exception("bridge: storing %d gateway messages failed; they stay unacknowledged", len(msgs))
            raise
        finally:
            self._tel_rows = []
        if self.publisher is not None and out:
            self.publisher.notify()
        for p in done:
            self.commands_done.append(p.as_dict())
            p.done.set()
        for ev in live:
            self._broadcast(ev)
        self.ota.feed(msgs)

    def _save_devices(self, changed: set[str], force: bool = False) -> None:
        """Device registry rows (inside the caller's transaction). A new device is saved at once; updates
        (last seen, RSSI, latest readings) at most every DEVICE_SAVE_S and on stop: they are derived state,
        rebuilt by the next message, not data the gateway was told it may forget."""
        self._dev_dirty |= changed
        now = time.monotonic()
        if not (force or self._dev_new & self._dev_dirty or now - self._dev_saved >= DEVICE_SAVE_S):
            return
        self.store.save_devices({mac: self.devices[mac] for mac in self._dev_dirty if mac in self.devices})
        self._dev_dirty.clear()
        self._dev_new.clear()
        self._dev_saved = now

    @staticmethod
    def _node_keys(msgs: list[dict[str, Any]], t: str, k: str) -> list[tuple[str, int, int]]:
        """(from, boot, d[k]) of the messages of type ``t`` that carry them: a node message's identity."""
        keys = []
        for m in msgs:
            d = m.get("d")
            if m["t"] == t and isinstance(d, dict) and isinstance(m.get("from"), str):
                boot, n = d.get("boot"), d.get(k)
                if isinstance(boot, int) and isinstance(n, int):
                    keys.append((m["from"], boot, n))
        return keys

    # ------------------------------------------------------------------ deriving
    def _device(self, mac: str, out: list[tuple[str, dict[str, Any] | str, bool]], changed: set[str]) -> dict[str, Any]:
        dev = self.devices.get(mac)
        if dev is None:
            dev = {"mac": mac, "name": None, "sensors": {}, "relays": {}, "first_seen": now_ms()}
            self.devices[mac] = dev
            self._devices_dirty = True
            self._dev_new.add(mac)
        changed.add(mac)
        return dev

    def _heard(self, mac: str, dev: dict[str, Any], m: dict[str, Any], rx: int,
               out: list[tuple[str, dict[str, Any] | str, bool]]) -> None:
        dev["last_seen"] = rx
        if isinstance(m.get("rssi"), int):
            dev["rssi"] = m["rssi"]
        if not dev.get("online"):
            dev["online"] = True
            out.append((self.topics.status(mac), "online", True))
            self._devices_dirty = True

    def _derive(self, m: dict[str, Any], rx: int, out: list[tuple[str, dict[str, Any] | str, bool]],
                live: list[dict[str, Any]], done: list[Pending], changed: set[str]) -> None:
        t = m["t"]
        mac = m.get("from") if isinstance(m.get("from"), str) else None
        d = m.get("d")
        if t == "tel" and mac and isinstance(d, dict):
            self._telemetry(mac, m, d, rx, out, live, changed)
        elif t == "evt" and mac and isinstance(d, dict):
            boot, e = d.get("boot"), d.get("e")
            if isinstance(boot, int) and isinstance(e, int):
                if (mac, boot, e) not in self._evt_new:   # a repeat of a stored event (gateway reboot)
                    self.counters["evt_duplicates"] += 1
                    return
                self._evt_new.discard((mac, boot, e))
            dev = self._device(mac, out, changed)
            self._heard(mac, dev, m, rx, out)
            self.counters["events"] += 1
            ev = {"ev": d.get("ev"), "sev": d.get("sev"), "d": d.get("d"), "ts": rx, "time": iso(rx)}
            if isinstance(e, int):
                ev["msg"] = {"boot": boot, "e": e}
            out.append((self.topics.event(mac), {"node": mac, **ev}, False))
            if d.get("ev") == "relay" and isinstance(d.get("d"), dict):
                rd = d["d"]
                if isinstance(rd.get("relay"), str):
                    dev.setdefault("relays", {})[rd["relay"]] = bool(rd.get("state"))
                    out.append((self.topics.state(mac), self._state_payload(mac, dev), True))
            live.append({"type": "event", "node": mac, **ev})
            self.recent.append({"node": mac, **ev})
        elif t == "nhb" and mac and isinstance(d, dict):
            dev = self._device(mac, out, changed)
            self._heard(mac, dev, m, rx, out)
            before = (dev.get("fw"), dev.get("app"), sorted(dev.get("relays", {})), dev.get("sl"))
            for k in ("fw", "role", "up", "boot"):
                if k in d:
                    dev[k] = d[k]
            if isinstance(d.get("app"), str):
                dev["app"] = d["app"]   # the installed app version (fw is the framework's)
            if isinstance(d.get("bd"), str):
                dev["board"] = d["bd"]
            dev["sl"] = d.get("sl") or 0
            if isinstance(d.get("relays"), dict):
                dev["relays"] = {str(k): bool(v) for k, v in d["relays"].items()}
            if isinstance(d.get("c"), dict):
                dev["c"] = {str(k): v for k, v in d["c"].items() if isinstance(v, int | float)}
            if isinstance(d.get("bat"), int | float):
                dev["battery"] = d["bat"]
            out.append((self.topics.state(mac), self._state_payload(mac, dev), True))
            if before != (dev.get("fw"), dev.get("app"), sorted(dev.get("relays", {})), dev.get("sl")) \
                    or not dev.get("discovered"):
                self._discovery(mac, dev, out)
            self._devices_dirty = True
            live.append({"type": "state", "node": mac, "state": self._state_payload(mac, dev)})
        elif t == "join" and mac:
            dev = self._device(mac, out, changed)
            self._heard(mac, dev, m, rx, out)
            out.append((self.topics.bridge("event"), {"type": "device_joined", "data": {"ieee_address": mac}}, False))
            live.append({"type": "join", "node": mac})
        elif t == "pj" and isinstance(m.get("open"), int):
            self._permit_join(m["open"], rx)
        elif t == "boot":
            self.gateway.update({"fw": m.get("fw"), "name": m.get("name"), "boot": m.get("boot")})
            self.gateway["permit_join"] = False
            self._info_dirty = True
            if self.cfg.discovery:
                out.extend(self._gateway_discovery())
            live.append({"type": "gateway", "boot": m.get("boot")})
        elif t in ("res", "cmd_state") and isinstance(m.get("id"), int):
            with self._plock:
                p = self.pending.get(m["id"])
                if p is not None and t == "res":
                    del self.pending[m["id"]]
            if p is None:
                return
            if t == "cmd_state":
                p.state = str(m.get("state") or "queued")
            else:
                p.state = "done"
                p.result = m
                done.append(p)
                self._command_side_effects(p, m, out, changed)
            self._report(p, out)
            live.append({"type": "ack", **p.as_dict()})
        elif t == "log":
            out.append((self.topics.bridge("log"), {"level": m.get("lvl"), "message": m.get("msg"), "ts": rx}, False))
        elif t == "ota":
            pass   # OTA transfer progress: stored; a running rollout gets it through self.ota.feed()
        else:
            self.counters["bad_uplink"] += 1

    def _telemetry(self, mac: str, m: dict[str, Any], d: dict[str, Any], rx: int,
                   out: list[tuple[str, dict[str, Any] | str, bool]], live: list[dict[str, Any]],
                   changed: set[str]) -> None:
        boot, q = d.get("boot"), d.get("q")
        if isinstance(boot, int) and isinstance(q, int) and (mac, boot, q) not in self._tel_new:
            self.counters["tel_duplicates"] += 1
            return
        self._tel_new.discard((mac, boot, q))   # the same key twice in one group: the second is a repeat
        self.counters["tel_messages"] += 1
        dev = self._device(mac, out, changed)
        self._heard(mac, dev, m, rx, out)
        if isinstance(d.get("sl"), int):
            dev["sl"] = d["sl"]
        ts = d.get("ts")
        base = ts if isinstance(ts, int) and ts > EPOCH_MIN_MS else rx
        rows = self._tel_rows
        new_quantity = False
        sensors = dev.setdefault("sensors", {})
        latest = dev.setdefault("latest", {})
        name = dev.get("name")
        rssi = m.get("rssi")
        stats = self._stats
        z = self.cfg.anomaly_z
        topics = self._tel_topics
        n = 0
        for i, entry in enumerate(d.get("r") or ()):
            if not (isinstance(entry, list | tuple) and len(entry) >= 2 and isinstance(entry[1], dict)):
                continue
            sensor = str(entry[0])
            age = entry[2] if len(entry) > 2 and isinstance(entry[2], int) else 0
            mts = base - age
            values = {str(k): v for k, v in entry[1].items()}
            known = sensors.get(sensor)
            if known is None:
                known = sensors[sensor] = []
            for qn, v in values.items():
                if not isinstance(v, int | float) or isinstance(v, bool):
                    continue
                if qn not in known:
                    known.append(qn)
                    new_quantity = True
                key = (mac, sensor, qn)
                st = stats.get(key)
                if st is None:
                    st = stats[key] = RollingStats(self.cfg.anomaly_window)
                fv = float(v)
                anomalous, mean, std = st.check_and_add(fv, z)
                rows.append((mac, sensor, qn, fv, mts, int(anomalous)))
                if anomalous:
                    self.counters["anomalies"] += 1
                    ev = {"ev": "anomaly", "sev": "warn", "ts": mts, "time": iso(mts),
                          "d": {"sensor": sensor, "quantity": qn, "value": v, "mean": round(mean, 4),
                                "std": round(std, 4)}}
                    out.append((self.topics.event(mac), {"node": mac, **ev}, False))
                    live.append({"type": "event", "node": mac, **ev})
                    self.recent.append({"node": mac, **ev})
            n += 1
            latest[sensor] = {"values": values, "ts": mts}
            topic = topics.get((mac, sensor))
            if topic is None:
                topic = topics[(mac, sensor)] = self.topics.telemetry(mac, sensor)
            out.append((topic, {
                "node": mac, "name": name, "sensor": sensor, "values": values, "ts": mts,
                "time": iso(mts), "age_ms": age, "rssi": rssi, "msg": {"boot": boot, "q": q, "i": i}}, False))
        self.counters["readings"] += n
        if new_quantity or not dev.get("discovered"):
            self._discovery(mac, dev, out)
        if self._listeners:   # the page's live feed (nobody listening: nothing to build)
            live.append({"type": "tel", "node": mac, "latest": latest, "rssi": dev.get("rssi"), "ts": rx})

    def _command_side_effects(self, p: Pending, res: dict[str, Any], out: list[tuple[str, dict[str, Any] | str, bool]],
                              changed: set[str]) -> None:
        r = res.get("r")
        if p.op == "relay" and p.mac and isinstance(r, dict) and r.get("ok") and "on" in r:
            dev = self._device(p.mac, out, changed)
            dev.setdefault("relays", {})[str(r.get("name"))] = bool(r["on"])
            out.append((self.topics.state(p.mac), self._state_payload(p.mac, dev), True))
        elif p.op == "pair_begin" and res.get("ok"):
            secs = int(p.args.get("s", 0))
            self.gateway["permit_join"] = secs > 0
            self.gateway["permit_join_end"] = now_ms() + secs * 1000 if secs else None
            self._info_dirty = True
        elif p.op == "pair_end" and res.get("ok"):
            self.gateway["permit_join"] = False
            self.gateway["permit_join_end"] = None
            self._info_dirty = True
        elif p.op == "status" and p.mac is None and isinstance(r, dict):
            self.gateway["status"] = r
            if isinstance(r.get("pj"), int):
                self._permit_join(r["pj"], now_ms())
            self.gateway["ring_dropped"] = r.get("ring_dropped", 0)
            if r.get("fw") and not self.gateway.get("fw"):
                self.gateway["fw"] = r.get("fw")
            self._info_dirty = True

    def _permit_join(self, secs: int, at_ms: int) -> None:
        """The gateway's join window: open for ``secs`` more seconds from ``at_ms`` (0: closed)."""
        self.gateway["permit_join"] = secs > 0
        self.gateway["permit_join_end"] = at_ms + secs * 1000 if secs > 0 else None
        self._info_dirty = True

    def _report(self, p: Pending, out: list[tuple[str, dict[str, Any] | str, bool]]) -> None:
        """Publish a command's progress: node ``ack`` topic, or the bridge response of a request."""
        body = p.as_dict()
        if p.source.startswith("request:"):
            if p.state not in ("done", "timeout", "error"):
                return
            name = p.source.split(":", 1)[1]
            ok = p.state == "done" and body["ok"]
            resp: dict[str, Any] = {"data": {"device": p.mac, "op": p.op, "r": body["r"]} if name == "command"
                                    else self._request_data(name, p), "status": "ok" if ok else "error"}
            if not ok:
                resp["error"] = body.get("err") or p.state
            if p.transaction is not None:
                resp["transaction"] = p.transaction
            out.append((self.topics.bridge(f"response/{name}"), resp, False))
        elif p.mac is not None and p.source != "internal":
            out.append((self.topics.ack(p.mac), {"id": p.corr, "op": p.op, "cmd_state": p.state, "ok": body["ok"],
                                                 "r": body["r"], "err": body["err"]}, False))

    def _request_data(self, name: str, p: Pending) -> dict[str, Any]:
        if name == "permit_join":
            return {"value": bool(self.gateway["permit_join"]), "time": int(p.args.get("s", 0))}
        if name == "remove":
            return {"id": p.args.get("mac")}
        return {}

    # ------------------------------------------------------------------ payloads
    def _state_payload(self, mac: str, dev: dict[str, Any]) -> dict[str, Any]:
        c = dev.get("c") or {}
        st: dict[str, Any] = {
            "relays": {k: ("ON" if v else "OFF") for k, v in (dev.get("relays") or {}).items()},
            "rssi": dev.get("rssi"), "uptime": dev.get("up"), "fw": dev.get("fw"),
            "last_seen": iso(dev["last_seen"]) if dev.get("last_seen") else None,
            "tel_fail": c.get("tel_fail"), "crashes": c.get("crashes"), "cmds": c.get("cmds"),
            "sleep_ms": dev.get("sl") or 0}
        if "battery" in dev:
            st["battery"] = dev["battery"]
        upd = self.ota.update_state(mac)
        if upd is not None:
            st["update"] = upd
        return st

    def expire_after(self, dev: dict[str, Any]) -> int:
        """Seconds without news after which a node is offline: three reporting periods (heartbeat, or
        deep-sleep period for sleepers) plus 30 s, so a sleeping node never flaps."""
        interval = max(self.cfg.heartbeat_s, int(dev.get("sl") or 0) // 1000)
        return 3 * interval + 30

    def _gateway_discovery(self) -> list[tuple[str, dict[str, Any] | str, bool]]:
        if not self.cfg.discovery:
            return []
        return [(t, p, True) for t, p in self.topics.gateway_discovery(
            {"fw": self.gateway.get("fw"), "name": self.gateway.get("name")})]

    def _discovery(self, mac: str, dev: dict[str, Any], out: list[tuple[str, dict[str, Any] | str, bool]]) -> None:
        dev["discovered"] = True
        if self.cfg.discovery:
            for topic, payload in self.topics.node_discovery(mac, dev, self.expire_after(dev)):
                out.append((topic, payload, True))
            if self.ota.enabled:
                out.append((*self.topics.update_discovery(mac, dev), True))

    def _enqueue(self, out: list[tuple[str, dict[str, Any] | str, bool]], ts: int) -> None:
        """Outbox rows (inside the caller's transaction). Every JSON object gets ``id`` (stable: the
        bridge id and outbox sequence, identical in a republish) and ``seq``, except Home Assistant
        discovery configs: those are retained configuration in HA's schema, published as built."""
        rows = []
        disc = self.topics.discovery_prefix + "/"
        seq = self.store.next_out_seq(len(out))
        prefix = f"{self.cfg.bridge_id}:"
        enc = _JSON.encode
        head = '{"id":' + enc(prefix)[:-1]          # '{"id":"<bridge_id>:' (JSON-escaped)
        for topic, payload, retain in out:
            if isinstance(payload, dict) and topic.startswith(disc):
                body = enc(payload).encode()
            elif isinstance(payload, dict):
                if payload and "id" not in payload and "seq" not in payload:
                    # id and seq spliced in front of the encoded payload (no merged dict per message)
                    body = f'{head}{seq}","seq":{seq},{enc(payload)[1:]}'.encode()
                else:   # an "id" of the payload's own (a command's correlation id) wins
                    body = enc({"id": prefix + str(seq), "seq": seq, **payload}).encode()
            else:
                body = payload.encode()
            rows.append((seq, topic, body, retain, ts))
            seq += 1
        if rows:
            self.store.insert_outbox(rows)

    def publish_update(self, mac: str, upd: dict[str, Any]) -> None:
        """A node's OTA update state (bridge/ota.py): stored with the device, its state topic (retained)
        published with it, the page told."""
        dev = self.devices.get(mac)
        if dev is None:
            return
        dev["update"] = dict(upd)
        with self.store.tx():
            self.store.save_device(mac, dev)
            self._enqueue([(self.topics.state(mac), self._state_payload(mac, dev), True)], now_ms())
        if self.publisher is not None:
            self.publisher.notify()
        self._broadcast({"type": "update", "node": mac, "update": dict(upd)})

    def _publish(self, out: list[tuple[str, dict[str, Any] | str, bool]]) -> None:
        """Outbox rows in a transaction of their own (not tied to a gateway message)."""
        if not out:
            return
        with self.store.tx():
            self._enqueue(out, now_ms())
        if self.publisher is not None:
            self.publisher.notify()

    # ------------------------------------------------------------------ housekeeping
    def _house_loop(self) -> None:
        last_ret = 0.0
        last_info = 0.0
        while not self._stop.wait(0.5):
            try:
                self._housekeeping()
                if isinstance(self.publisher, ProcessPublisher):
                    self.publisher.trim()
                now = time.monotonic()
                if self._info_dirty or now - last_info > 30:
                    self._info_dirty = False
                    last_info = now
                    self._publish([(self.topics.bridge("info"), self.info(), True)])
                if self._devices_dirty:
                    self._devices_dirty = False
                    self._publish([(self.topics.bridge("devices"), {"devices": self.device_list()}, True)])
                if now - last_ret > 60:
                    last_ret = now
                    if self.client is not None:
                        try:
                            self.command(None, "status", {}, source="internal")
                        except FieldlinkError:
                            pass
                    upto = self.publisher.cursor if self.publisher is not None else self.store.get_meta("published")
                    self.store.enforce_retention(int(self.cfg.retention_hours * 3600_000),
                                                 int(self.cfg.retention_max_mb * 1024 * 1024), upto)
            except Exception:  # keep the housekeeping alive whatever a single round hit
                log.exception("bridge: housekeeping failed")

    def _housekeeping(self) -> None:
        now = now_ms()
        out: list[tuple[str, dict[str, Any] | str, bool]] = []
        for mac, dev in list(self.devices.items()):
            if dev.get("online") and now - int(dev.get("last_seen") or 0) > self.expire_after(dev) * 1000:
                dev["online"] = False
                self._devices_dirty = True
                out.append((self.topics.status(mac), "offline", True))
                self._broadcast({"type": "status", "node": mac, "online": False})
        if self.gateway.get("permit_join") and self.gateway.get("permit_join_end") and now > self.gateway["permit_join_end"]:
            self.gateway["permit_join"] = False
            self._info_dirty = True
        mono = time.monotonic()
        expired: list[Pending] = []
        with self._plock:
            for cid, p in list(self.pending.items()):
                if mono > p.deadline:
                    del self.pending[cid]
                    p.state = "timeout"
                    expired.append(p)
        for p in expired:
            self.counters["command_timeouts"] += 1
            self._report(p, out)
            self.commands_done.append(p.as_dict())
            p.done.set()
            self._broadcast({"type": "ack", **p.as_dict()})
        self._publish(out)

    # ------------------------------------------------------------------ commands
    def command(self, mac: str | None, op: str, args: dict[str, Any] | None = None, *, corr: Any = None,
                source: str = "api", timeout: float | None = None, ttl: int | None = None,
                transaction: Any = None) -> Pending:
        """Send a command (node command with ``mac``, gateway command without); returns at once. The
        result arrives in ``Pending.result`` (wait on ``Pending.done``) and on MQTT."""
        client = self.client
        if client is None:
            raise FieldlinkError("the gateway is not connected")
        cid = client.new_id()
        to = timeout if timeout is not None else self.cfg.cmd_timeout_s
        if ttl:
            to = max(to, float(ttl))
        p = Pending(cid, mac, op, dict(args or {}), corr, source, time.monotonic() + to, transaction)
        msg: dict[str, Any] = {"t": "cmd", "id": cid, "op": op, "a": p.args}
        if mac is not None:
            msg["to"] = mac
        if ttl is not None:
            msg["ttl"] = int(ttl)
        with self._plock:
            self.pending[cid] = p
        try:
            client.send(msg)
        except UplinkError:
            with self._plock:
                self.pending.pop(cid, None)
            raise
        self.counters["commands"] += 1
        return p

    def command_wait(self, mac: str | None, op: str, args: dict[str, Any] | None = None,
                     timeout: float | None = None, **kw: Any) -> Pending:
        p = self.command(mac, op, args, timeout=timeout, **kw)
        p.done.wait((timeout if timeout is not None else self.cfg.cmd_timeout_s) + 1)
        return p

    # ------------------------------------------------------------------ MQTT input
    def handle_mqtt(self, topic: str, payload: bytes) -> None:
        """Commands and bridge requests from MQTT; anything malformed is counted and answered."""
        if topic == f"{self.cfg.discovery_prefix}/status":
            if payload.strip() == b"online":   # Home Assistant restarted: discovery again
                self.republish_discovery()
            return
        req_prefix = self.topics.bridge("request/")
        if topic.startswith(req_prefix + OTA_REQUEST):
            self.ota.handle_mqtt(topic[len(req_prefix + OTA_REQUEST):], payload)
            return
        if topic.startswith(req_prefix):
            self._bridge_request(topic[len(req_prefix):], payload)
            return
        mac = self.topics.parse_cmd(topic)
        if mac is None:
            self.counters["bad_mqtt"] += 1
            return
        body: Any = None
        try:
            body = json.loads(payload)
            if not isinstance(body, dict) or not isinstance(body.get("op"), str) or not body["op"]:
                raise ValueError("needs a JSON object with a string 'op'")
            args = body.get("a", {})
            if not isinstance(args, dict):
                raise ValueError("'a' must be an object")
            ttl = body.get("ttl")
            if ttl is not None and not isinstance(ttl, int):
                raise ValueError("'ttl' must be an integer")
            if mac not in self.devices:
                raise ValueError(f"unknown device {mac}")
        except (ValueError, UnicodeDecodeError) as exc:
            self.counters["bad_mqtt"] += 1
            corr = body.get("id") if isinstance(body, dict) else None
            self._publish([(self.topics.ack(mac), {"id": corr, "cmd_state": "error", "ok": False,
                                                   "err": "bad_request", "detail": str(exc)[:200]}, False)])
            return
        try:
            self.command(mac, body["op"], args, corr=body.get("id"), source="mqtt", ttl=ttl)
        except FieldlinkError as exc:
            self._publish([(self.topics.ack(mac), {"id": body.get("id"), "op": body["op"], "cmd_state": "error",
                                                   "ok": False, "err": "gateway_unavailable",
                                                   "detail": str(exc)}, False)])

    def _bridge_request(self, name: str, payload: bytes) -> None:
        transaction: Any = None
        try:
            body = json.loads(payload) if payload.strip() else {}
            if not isinstance(body, dict):
                raise ValueError("request must be a JSON object")
            transaction = body.get("transaction")
            self.bridge_request(name, body, transaction)
        except (ValueError, UnicodeDecodeError, FieldlinkError) as exc:
            self.counters["bad_requests"] += 1
            resp: dict[str, Any] = {"data": {}, "status": "error", "error": str(exc)[:200]}
            if transaction is not None:
                resp["transaction"] = transaction
            self._publish([(self.topics.bridge(f"response/{name}"), resp, False)])

    def bridge_request(self, name: str, body: dict[str, Any], transaction: Any = None) -> Pending | None:
        """Zigbee2MQTT-style requests: permit_join, rename, remove, command."""
        src = f"request:{name}"
        if name == "permit_join":
            value = body.get("value", True)
            secs = body.get("time", 254 if value else 0)
            if not isinstance(secs, int) or secs < 0:
                raise ValueError("permit_join: 'time' must be seconds >= 0")
            if not value or secs == 0:
                return self.command(None, "pair_end", {}, source=src, transaction=transaction)
            return self.command(None, "pair_begin", {"s": secs}, source=src, transaction=transaction)
        if name == "rename":
            src_id, to = body.get("from"), body.get("to")
            mac = self.resolve(src_id)
            if not isinstance(to, str) or not to.strip():
                raise ValueError("rename: 'to' must be a non-empty name")
            self.rename(mac, to.strip())
            resp = {"data": {"from": src_id, "to": to.strip()}, "status": "ok"}
            if transaction is not None:
                resp["transaction"] = transaction
            self._publish([(self.topics.bridge("response/rename"), resp, False)])
            return None
        if name == "remove":
            mac = self.resolve(body.get("id"))
            p = self.command(None, "forget", {"mac": mac}, source=src, transaction=transaction)
            self.remove(mac)
            return p
        if name == "command":
            mac = self.resolve(body.get("device"))
            op, args = body.get("op"), body.get("a", {})
            if not isinstance(op, str) or not isinstance(args, dict):
                raise ValueError("command: needs 'op' (string) and optional 'a' (object)")
            return self.command(mac, op, args, source=src, transaction=transaction)
        raise ValueError(f"unknown request {name!r}")

    def resolve(self, ident: Any) -> str:
        """A device by MAC (any case, with or without colons) or by name."""
        if not isinstance(ident, str) or not ident:
            raise ValueError("device id must be a MAC or a name")
        mac = ident.replace(":", "").lower()
        if mac in self.devices:
            return mac
        for m, dev in self.devices.items():
            if dev.get("name") == ident:
                return m
        raise ValueError(f"unknown device {ident!r}")

    def rename(self, mac: str, name: str) -> None:
        dev = self.devices[mac]
        dev["name"] = name
        out: list[tuple[str, dict[str, Any] | str, bool]] = []
        self._discovery(mac, dev, out)
        with self.store.tx():
            self.store.save_device(mac, dev)
            self._enqueue(out, now_ms())
        self._devices_dirty = True
        if self.publisher is not None:
            self.publisher.notify()

    def remove(self, mac: str) -> None:
        dev = self.devices.pop(mac, None)
        if dev is None:
            return
        out: list[tuple[str, dict[str, Any] | str, bool]] = []
        if self.cfg.discovery:   # an empty retained config removes the entity in Home Assistant
            for topic, _ in self.topics.node_discovery(mac, dev, self.expire_after(dev)):
                out.append((topic, "", True))
            out.append((self.topics.update_discovery(mac, dev)[0], "", True))
        out.append((self.topics.status(mac), "", True))
        out.append((self.topics.state(mac), "", True))
        self.store.delete_device(mac)
        self._publish(out)
        self._devices_dirty = True

    def republish_discovery(self) -> None:
        out = self._gateway_discovery()
        for mac, dev in self.devices.items():
            self._discovery(mac, dev, out)
            out.append((self.topics.status(mac), "online" if dev.get("online") else "offline", True))
            out.append((self.topics.state(mac), self._state_payload(mac, dev), True))
        self._publish(out)

    # ------------------------------------------------------------------ views (web, API)
    def info(self) -> dict[str, Any]:
        pub = self.publisher
        c = self.client
        return {"version": __version__, "bridge_id": self.cfg.bridge_id, "site": self.cfg.site,
                "gateway": {k: v for k, v in self.gateway.items() if k != "status"},
                "permit_join": bool(self.gateway.get("permit_join")),
                "permit_join_end": self.gateway.get("permit_join_end"),
                "nodes": len(self.devices), "online": sum(1 for d in self.devices.values() if d.get("online")),
                "mqtt": {"configured": pub is not None, "connected": bool(pub and pub.connected.is_set()),
                         **(pub.stats if pub else {})},
                "backlog": pub.backlog() if pub else 0, "mqtt_dropped": self.store.get_meta("dropped"),
                "ring_dropped": self.gateway.get("ring_dropped", 0),
                "uplink": {**(c.stats.__dict__ if c else {})}, "counters": dict(self.counters),
                "uptime_s": int(time.time() - self.started)}

    def device_list(self) -> list[dict[str, Any]]:
        out = []
        for mac, dev in sorted(self.devices.items()):
            out.append({"ieee_address": mac, "mac": mac, "friendly_name": dev.get("name") or mac,
                        "name": dev.get("name"), "board": dev.get("board") or dev.get("role"),
                        "firmware": dev.get("app") or dev.get("fw"), "rssi": dev.get("rssi"), "online": bool(dev.get("online")),
                        "last_seen": iso(dev["last_seen"]) if dev.get("last_seen") else None,
                        "battery": dev.get("battery"), "relays": dev.get("relays", {}),
                        "sensors": dev.get("sensors", {}), "latest": dev.get("latest", {}),
                        "sleep_ms": dev.get("sl") or 0, "counters": dev.get("c", {})})
        return out

    def subscribe(self) -> queue.Queue[dict[str, Any]]:
        q: queue.Queue[dict[str, Any]] = queue.Queue(1000)
        with self._llock:
            self._listeners.append(q)
        return q

    def unsubscribe(self, q: queue.Queue[dict[str, Any]]) -> None:
        with self._llock:
            if q in self._listeners:
                self._listeners.remove(q)

    def _broadcast(self, ev: dict[str, Any]) -> None:
        with self._llock:
            for q in self._listeners:
                try:
                    q.put_nowait(ev)
                except queue.Full:
                    pass
