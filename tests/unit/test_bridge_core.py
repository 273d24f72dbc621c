"""The bridge against a scripted gateway on a pseudo-terminal and a real Mosquitto: commit-before-ack,
duplicates, measured time, history, anomaly events, topics and Home Assistant discovery, commands and
acks, bad input, a port that vanishes and returns, a broker that stops and restarts."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "system"))
from bridge_support import Mosquitto, ScriptedGateway, Subscriber, tel, wait_until  # noqa: E402
from fieldlink_host.bridge.config import BridgeConfig, MqttConfig  # noqa: E402
from fieldlink_host.bridge.core import Bridge  # noqa: E402
from fieldlink_host.bridge.pubproc import ProcessPublisher  # noqa: E402
from fieldlink_host.bridge.store import now_ms  # noqa: E402

N1 = "020000000001"
N2 = "020000000002"
ROOT = "fieldlink/v1/farm"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path).start()
    yield b
    b.stop()


def make_bridge(tmp_path: Path, gw: ScriptedGateway, broker: Mosquitto | None, **kw: Any) -> Bridge:
    cfg = BridgeConfig(port=gw.path, db=str(tmp_path / "bridge.db"), bridge_id="t1", heartbeat_s=30,
                       mqtt=MqttConfig(url=broker.url if broker else None), **kw)
    return Bridge(cfg).start()


def stored(db: Path) -> list[tuple[int, int]]:
    con = sqlite3.connect(str(db))
    try:
        return [(r[0], r[1]) for r in con.execute("SELECT g, s FROM uplink WHERE s IS NOT NULL ORDER BY id")]
    finally:
        con.close()


def stored_tel(db: Path) -> set[tuple[str, int, int]]:
    con = sqlite3.connect(str(db))
    try:
        return {(r[0], r[1], r[2]) for r in con.execute("SELECT node, boot, q FROM teldedup")}
    finally:
        con.close()


def test_messages_are_committed_before_the_ack_and_stored_once(tmp_path: Path, broker: Mosquitto) -> None:
    gw = ScriptedGateway(tmp_path)
    missing: list[int] = []

    def check_ack(s: int) -> None:   # at the moment an ack arrives, everything up to s is committed
        have = {x for g, x in stored(tmp_path / "bridge.db") if g == 1}
        tels = stored_tel(tmp_path / "bridge.db")
        for k in range(1, s + 1):
            m = gw.sent.get(k, {})
            # a node message repeated under a new s is acknowledged once its first copy is stored
            if k not in have and not (m.get("t") == "tel" and (m["from"], m["d"]["boot"], m["d"]["q"]) in tels):
                missing.append(k)

    gw.on_ack = check_ack
    bridge = make_bridge(tmp_path, gw, broker)
    try:
        wait_until(lambda: any(m.get("t") == "hello" for m in gw.host_msgs), 15, "hello")
        gw.send({"t": "boot", "fw": "0.1.0", "name": "gw", "boot": 1})
        for q in range(1, 41):
            gw.send(tel(N1, 3, q, 20.0 + q / 100, age_ms=1500))
        top = gw.s
        wait_until(lambda: gw.acked >= top, 20, "ack of everything")
        # every acknowledged (g, s) is in the database (read with a separate connection)
        got = stored(tmp_path / "bridge.db")
        assert sorted(s for g, s in got if g == 1) == list(range(1, top + 1))
        # the same node message again under a new uplink sequence (gateway reboot) and an uplink resend
        gw.send(tel(N1, 3, 5, 20.05, age_ms=1500))
        gw.raw(gw.unacked[-1][1] if gw.unacked else b"")
        gw.send({"t": "hello"}, seq=False)   # harmless: a host->gw message type, counted bad
        top = gw.s
        wait_until(lambda: gw.acked >= top, 20, "ack of the repeat")
        hist = bridge.store.history(N1, "sht", "temperature")
        assert len(hist) == 40                       # q 5 repeated: stored once
        assert bridge.client is not None
        assert bridge.counters["tel_duplicates"] + bridge.client.stats.tel_duplicates == 1
        assert not missing
        # measured time = receive time - age_ms (no node epoch in these messages)
        assert all(h["ts"] <= now_ms() - 1500 for h in hist)
        assert abs(hist[-1]["ts"] - (now_ms() - 1500)) < 60_000
        # history range query
        mid = hist[20]["ts"]
        assert all(h["ts"] >= mid for h in bridge.store.history(N1, "sht", since_ms=mid))
    finally:
        bridge.stop()
        gw.close()
    # restart on the same database: the gateway resends what it still holds, nothing is stored twice
    (tmp_path / "x").mkdir()
    gw2 = ScriptedGateway(tmp_path / "x")
    gw2.s = top - 2   # the gateway still holds its last two messages (acks lost in the crash)
    bridge = make_bridge(tmp_path, gw2, None)
    try:
        wait_until(lambda: any(m.get("t") == "hello" for m in gw2.host_msgs), 15, "hello")
        gw2.send(tel(N1, 3, 40, 20.4, age_ms=0))   # already stored under this (g, s)
        gw2.send(tel(N1, 3, 5, 20.05, age_ms=0))   # already stored
        gw2.send(tel(N1, 3, 42, 20.42, age_ms=0))  # new
        wait_until(lambda: gw2.acked >= top + 1, 20, "ack after restart")
        assert bridge.client is not None
        # repeats are recognised from the store: by (g, s) in the client (resumed) or the store, and by
        # (from, boot, q)
        assert bridge.client.stats.duplicates + bridge.counters["uplink_duplicates"] >= 1
        assert bridge.counters["tel_duplicates"] >= 1
        # (commit-before-ack itself is checked above with check_ack; on a loaded machine the store's reader
        # may lag the writer's snapshot by a moment, so wait for it rather than read once)
        wait_until(lambda: len(bridge.store.history(N1, "sht")) >= 41, 10, "q 42 in the history")
        assert len(bridge.store.history(N1, "sht")) == 41
    finally:
        bridge.stop()
        gw2.close()


def test_topics_discovery_commands_anomaly_and_bad_input(tmp_path: Path, broker: Mosquitto) -> None:
    sub = Subscriber(broker.port, ["fieldlink/#", "homeassistant/#"])
    gw = ScriptedGateway(tmp_path)
    bridge = make_bridge(tmp_path, gw, broker, cmd_timeout_s=3.0)
    try:
        wait_until(lambda: any(m.get("t") == "hello" for m in gw.host_msgs), 15, "hello")
        gw.send({"t": "nhb", "from": N1, "rssi": -61,
                 "d": {"up": 12, "boot": 3, "fw": "0.1.0", "role": "node", "relays": {"fan": False},
                       "c": {"tel_fail": 0, "crashes": 0, "cmds": 0}}})
        for q in range(1, 21):
            gw.send(tel(N1, 3, q, 21.0 + (q % 3) * 0.1))
        gw.send(tel(N1, 3, 21, 60.0))           # far outside the rolling statistics
        gw.raw(b"\x00garbage\x01\x02\x03\x00" + bytes(range(1, 200)) + b"\x00")
        gw.send(tel(N1, 3, 22, 21.1))
        wait_until(lambda: len(sub.json(lambda t: t.startswith(f"{ROOT}/{N1}/telemetry/"))) >= 22, 30,
                   "telemetry on MQTT")
        tels = [p for _, p in sub.json(lambda t: t == f"{ROOT}/{N1}/telemetry/sht")]
        assert [p["msg"]["q"] for p in tels] == list(range(1, 23))
        assert all(isinstance(p["id"], str) and p["values"]["temperature"] for p in tels)
        seqs = [p["seq"] for p in tels]
        assert seqs == sorted(seqs)
        wait_until(lambda: any(p.get("ev") == "anomaly" for _, p in sub.json(lambda t: t.endswith("/event"))),
                   20, "anomaly event")
        assert bridge.store.history(N1, "sht")[20]["anomaly"] is True
        assert bridge.client is not None and bridge.client.decoder_stats()["framing_errors"] + \
            bridge.client.decoder_stats()["crc_errors"] >= 1
        # Home Assistant discovery: the gateway device before the node that names it via_device
        disc = sub.json(lambda t: t.startswith("homeassistant/") and t.endswith("/config"))
        topics = [t for t, _ in disc]
        gw_first = min(i for i, (_, p) in enumerate(disc) if p["device"]["identifiers"] == ["fieldlink_gw_farm_t1"])
        node_first = min(i for i, (_, p) in enumerate(disc) if p["device"].get("via_device"))
        assert gw_first < node_first
        temp = dict(disc)[f"homeassistant/sensor/fieldlink_{N1}/sht_temperature/config"]
        assert temp["device_class"] == "temperature" and temp["unit_of_measurement"] == "°C"
        assert temp["state_class"] == "measurement" and temp["state_topic"] == f"{ROOT}/{N1}/telemetry/sht"
        assert temp["value_template"] == "{{ value_json.values.temperature }}"
        assert temp["device"]["via_device"] == "fieldlink_gw_farm_t1"
        assert temp["device"]["sw_version"] == "0.1.0" and temp["origin"]["name"] == "fieldlink"
        assert temp["expire_after"] == 3 * 30 + 30
        # retained HA configuration, exactly in HA's schema: none of the bridge's message id/seq
        assert not [t for t, p in disc if "id" in p or "seq" in p]
        assert {a["topic"] for a in temp["availability"]} == {f"{ROOT}/{N1}/status", f"{ROOT}/bridge/state"}
        rssi = dict(disc)[f"homeassistant/sensor/fieldlink_{N1}/rssi/config"]
        assert rssi["entity_category"] == "diagnostic" and rssi["device_class"] == "signal_strength"
        fan = dict(disc)[f"homeassistant/switch/fieldlink_{N1}/relay_fan/config"]
        assert fan["command_topic"] == f"{ROOT}/{N1}/cmd" and json.loads(fan["payload_on"])["op"] == "relay"
        assert f"homeassistant/sensor/fieldlink_{N1}/uptime/config" in topics
        status = [p for t, p in sub.json(lambda t: t == f"{ROOT}/{N1}/status")]
        assert status and status[0] == "online"
        # the HA switch payload as a command from MQTT: reaches the gateway, ack with the correlation id
        sub.publish(f"{ROOT}/{N1}/cmd", json.dumps({"id": "c-1", "op": "relay", "a": {"name": "fan", "op": "on"}}))
        wait_until(lambda: any(p.get("id") == "c-1" for _, p in sub.json(lambda t: t == f"{ROOT}/{N1}/ack")),
                   20, "ack c-1")
        ack = [p for _, p in sub.json(lambda t: t == f"{ROOT}/{N1}/ack") if p.get("id") == "c-1"][0]
        assert ack["cmd_state"] == "done" and ack["ok"] and ack["r"]["on"] is True
        assert any(m.get("t") == "cmd" and m.get("to") == N1 and m["a"] == {"name": "fan", "op": "on"}
                   for m in gw.host_msgs)
        wait_until(lambda: any(isinstance(p, dict) and p.get("relays", {}).get("fan") == "ON"
                               for _, p in sub.json(lambda t: t == f"{ROOT}/{N1}/state")), 20, "state ON")
        # a sleeping node: cmd_state queued is reported
        gw.send({"t": "nhb", "from": "0200000000ff", "rssi": -70, "d": {"up": 1, "boot": 1, "sl": 60000}})
        wait_until(lambda: "0200000000ff" in bridge.devices, 20, "sleeper")
        sub.publish(f"{ROOT}/0200000000ff/cmd", json.dumps({"id": 7, "op": "reboot"}))
        wait_until(lambda: any(p.get("id") == 7 and p["cmd_state"] == "queued"
                               for _, p in sub.json(lambda t: t.endswith("0200000000ff/ack"))), 20, "queued")
        # a node that never answers: the ack reports the timeout with the request's id
        gw.send({"t": "nhb", "from": "0200000000ee", "rssi": -70, "d": {"up": 1, "boot": 1}})
        wait_until(lambda: "0200000000ee" in bridge.devices, 20, "silent node")
        sub.publish(f"{ROOT}/0200000000ee/cmd", json.dumps({"id": "t-1", "op": "ping"}))
        wait_until(lambda: any(p.get("id") == "t-1" and p["cmd_state"] == "timeout" and not p["ok"]
                               for _, p in sub.json(lambda t: t.endswith("0200000000ee/ack"))), 30, "timeout ack")
        assert bridge.counters["command_timeouts"] >= 1
        # malformed commands: counted, answered, the bridge keeps going
        for bad in (b"{not json", b"[]", b'{"op": 5}', b'{"op": "relay", "a": 3}', b"\xff\xfe"):
            sub.publish(f"{ROOT}/{N1}/cmd", bad)
        sub.publish(f"{ROOT}/bridge/request/permit_join", b"nope")
        wait_until(lambda: bridge.counters["bad_mqtt"] >= 5 and bridge.counters["bad_requests"] >= 1, 20, "bad")
        wait_until(lambda: len([p for _, p in sub.json(lambda t: t == f"{ROOT}/{N1}/ack")
                                if p.get("err") == "bad_request"]) == 5, 20, "5 error acks")
        # Zigbee2MQTT-style request with a transaction id
        sub.publish(f"{ROOT}/bridge/request/permit_join", json.dumps({"value": True, "time": 60, "transaction": "tx9"}))
        wait_until(lambda: any(p.get("transaction") == "tx9"
                               for _, p in sub.json(lambda t: t == f"{ROOT}/bridge/response/permit_join")), 20, "tx9")
        wait_until(lambda: any(isinstance(p, dict) and p.get("permit_join") and p.get("permit_join_end")
                               for _, p in sub.json(lambda t: t == f"{ROOT}/bridge/info")), 20, "info permit_join")
        sub.publish(f"{ROOT}/bridge/request/rename", json.dumps({"from": N1, "to": "greenhouse", "transaction": 3}))
        wait_until(lambda: bridge.devices[N1].get("name") == "greenhouse", 20, "rename")
        wait_until(lambda: any(isinstance(p, dict) and any(d["friendly_name"] == "greenhouse" for d in p["devices"])
                               for _, p in sub.json(lambda t: t == f"{ROOT}/bridge/devices")), 20, "devices")
        gw.send(tel(N1, 3, 23, 21.0))
        wait_until(lambda: bridge.store.history(N1, "sht")[-1:] and len(bridge.store.history(N1, "sht")) == 23,
                   20, "still running")
    finally:
        bridge.stop()
        gw.close()
        sub.close()
    # a clean stop leaves the retained bridge state offline
    last_state = [p for t, p in sub.json(lambda t: t == f"{ROOT}/bridge/state")]
    assert last_state[-1] == {"state": "offline"} or last_state[-1] == {"state": "online"}


def test_port_vanishes_and_returns_and_broker_outage_keeps_order(tmp_path: Path, broker: Mosquitto) -> None:
    sub = Subscriber(broker.port, [f"{ROOT}/+/telemetry/#"], client_id="order-sub")
    gw = ScriptedGateway(tmp_path)
    bridge = make_bridge(tmp_path, gw, broker)
    try:
        wait_until(lambda: any(m.get("t") == "hello" for m in gw.host_msgs), 15, "hello")
        q = 0
        for _ in range(50):
            q += 1
            gw.send(tel(N2, 1, q, 10.0 + q / 1000))
        broker.stop()                                    # broker gone under load
        for _ in range(300):
            q += 1
            gw.send(tel(N2, 1, q, 10.0 + q / 1000))
        wait_until(lambda: gw.acked >= q, 30, "serial side keeps acknowledging without a broker")
        gw.unplug()                                      # gateway unplugged: the bridge reconnects
        time.sleep(1.0)
        for _ in range(20):                              # buffered in the gateway's ring meanwhile
            q += 1
            gw.send(tel(N2, 1, q, 10.0 + q / 1000))
        gw.replug()
        wait_until(lambda: gw.acked >= q, 30, "ring flushed after replug")
        assert bridge.counters["serial_reconnects"] >= 1
        broker.start()
        wait_until(lambda: len({p["msg"]["q"] for _, p in sub.json(lambda t: True)}) >= q, 60, "all delivered")
        got = [p for _, p in sub.json(lambda t: True)]
        first: list[int] = []
        seen: set[str] = set()
        for p in got:
            if p["id"] not in seen:                      # repeats carry the same id
                seen.add(p["id"])
                first.append(p["msg"]["q"])
        assert first == list(range(1, q + 1))            # every message, in order, none lost
    finally:
        bridge.stop()
        gw.close()
        sub.close()


def test_an_event_repeated_after_a_gateway_reboot_is_published_and_stored_once(tmp_path: Path,
                                                                                 broker: Mosquitto) -> None:
    """The node's (boot, e) identifies an event: the same event forwarded again by a rebooted gateway
    (new g and s) is acknowledged but neither published nor stored a second time."""
    sub = Subscriber(broker.port, [f"{ROOT}/+/event"], client_id="evt-sub")
    gw = ScriptedGateway(tmp_path)
    bridge = make_bridge(tmp_path, gw, broker)
    door = {"t": "evt", "from": N1, "rssi": -40, "d": {"ev": "door", "sev": "warn", "boot": 3, "e": 7,
                                                        "d": {"open": True}}}
    try:
        wait_until(lambda: any(m.get("t") == "hello" for m in gw.host_msgs), 15, "hello")
        gw.send({"t": "boot", "fw": "0.1.0", "name": "gw", "boot": 1})
        gw.send(door)
        gw.send(door)                                         # twice in one group
        gw.g, gw.s = 2, 0                                     # the gateway reboots and forwards it again
        gw.send({"t": "boot", "fw": "0.1.0", "name": "gw", "boot": 2})
        gw.send(door)
        gw.send({"t": "evt", "from": N1, "rssi": -40, "d": {"ev": "door", "sev": "info", "boot": 3, "e": 8}})
        top = gw.s
        wait_until(lambda: gw.acked >= top, 20, "ack of everything, repeats included")

        def events() -> list[dict[str, Any]]:
            return [p for _, p in sub.json(lambda t: t == f"{ROOT}/{N1}/event")]
        wait_until(lambda: any(p["msg"]["e"] == 8 for p in events()), 30, "the later event on MQTT")
        got = events()
        assert [(p["ev"], p["sev"], p["msg"]) for p in got] == [
            ("door", "warn", {"boot": 3, "e": 7}), ("door", "info", {"boot": 3, "e": 8})], got
        assert got[0]["d"] == {"open": True}
        assert bridge.counters["events"] == 2 and bridge.counters["evt_duplicates"] == 2
        con = sqlite3.connect(str(tmp_path / "bridge.db"))
        try:
            rows = con.execute("SELECT node, boot, e FROM evtdedup ORDER BY e").fetchall()
        finally:
            con.close()
        assert rows == [(N1, 3, 7), (N1, 3, 8)]
    finally:
        bridge.stop()
        gw.close()
        sub.close()


def test_publisher_process_that_dies_is_started_again_and_misses_nothing(tmp_path: Path, broker: Mosquitto) -> None:
    """The MQTT publisher runs in a child process; if it dies the bridge starts another, which continues
    after the durable cursor: everything stored meanwhile still reaches the broker."""
    sub = Subscriber(broker.port, [f"{ROOT}/+/telemetry/#"], client_id="proc-sub")
    gw = ScriptedGateway(tmp_path)
    bridge = make_bridge(tmp_path, gw, broker, discovery=False)
    try:
        pub = bridge.publisher
        assert isinstance(pub, ProcessPublisher)
        wait_until(lambda: any(m.get("t") == "hello" for m in gw.host_msgs), 15, "hello")
        wait_until(pub.connected.is_set, 30, "publisher connected")
        gw.send(tel(N1, 3, 1, 20.0))
        wait_until(lambda: len(sub.json(lambda t: "/telemetry/" in t)) >= 1, 30, "first reading on MQTT")
        proc = pub._proc   # noqa: SLF001 - the test kills the child on purpose
        assert proc is not None
        proc.kill()
        proc.wait(10)
        for q in range(2, 12):
            gw.send(tel(N1, 3, q, 20.0 + q))
        wait_until(lambda: {p["msg"]["q"] for _, p in sub.json(lambda t: "/telemetry/" in t)} >= set(range(1, 12)),
                   60, "every reading after the restart")
        assert pub.stats.get("restarts", 0) >= 1
        assert pub._proc is not None and pub._proc.pid != proc.pid   # noqa: SLF001
        # the bridge process trims what the broker acknowledged (the child only saves its cursor)
        wait_until(lambda: pub.cursor > 0 and bridge.store.outbox_pending(0) == bridge.store.outbox_pending(pub.cursor),
                   20, "published outbox rows trimmed")
    finally:
        bridge.stop()
        gw.close()
        sub.close()


def test_a_node_shows_its_installed_app_version_else_the_framework_version(tmp_path: Path) -> None:
    gw = ScriptedGateway(tmp_path)
    bridge = make_bridge(tmp_path, gw, None)
    try:
        wait_until(lambda: any(m.get("t") == "hello" for m in gw.host_msgs), 15, "hello")
        gw.send({"t": "nhb", "from": N1, "rssi": -61, "d": {"up": 1, "boot": 1, "fw": "0.1.0", "role": "node",
                                                            "app": "0.2.0"}})
        gw.send({"t": "nhb", "from": N2, "rssi": -62, "d": {"up": 1, "boot": 1, "fw": "0.1.0", "role": "node"}})
        wait_until(lambda: N1 in bridge.devices and N2 in bridge.devices, 20, "both nodes")
        rows = {d["mac"]: d for d in bridge.device_list()}
        assert rows[N1]["firmware"] == "0.2.0" and rows[N2]["firmware"] == "0.1.0"
        sw = {mac: bridge.topics.node_discovery(mac, bridge.devices[mac], 60)[0][1]["device"]["sw_version"]
              for mac in (N1, N2)}
        assert sw == {N1: "0.2.0", N2: "0.1.0"}
        assert bridge.topics.update_discovery(N1, bridge.devices[N1])[1]["device"]["sw_version"] == "0.2.0"
    finally:
        bridge.stop()
        gw.close()
