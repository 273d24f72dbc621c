"""The bridge with the virtual farm (real micropython gateway and nodes) and a real Mosquitto:
telemetry and Home Assistant discovery on MQTT, a relay command from MQTT reaching a node, a broker
outage under load (every message arrives, in order, repeats identifiable), the gateway port vanishing
and returning, a bridge process SIGKILLed mid-stream and restarted, and 200 nodes (slow)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bridge_support import Mosquitto, Subscriber, wait_until  # noqa: E402
from fieldlink_host.bridge.config import BridgeConfig, MqttConfig  # noqa: E402
from fieldlink_host.bridge.core import Bridge  # noqa: E402
from fieldlink_host.farm import Farm, PtyMasterPort, mac_hex, node_mac  # noqa: E402
from test_farm_support import spawn_gateway_pty  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT_T = "fieldlink/v1/farm"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path).start()
    yield b
    b.stop()


class UnpluggablePort:
    """The farm's pty as a USB port that can vanish: reads/writes fail while unplugged; on replug the
    bytes the gateway wrote meanwhile are gone (a real unplug loses them too)."""

    def __init__(self, port: PtyMasterPort) -> None:
        self.port = port
        self.plugged = threading.Event()
        self.plugged.set()

    def factory(self) -> UnpluggablePort:
        if not self.plugged.is_set():
            raise OSError(2, "No such file or directory")
        return self

    def read(self, n: int) -> bytes:
        if not self.plugged.is_set():
            raise OSError(5, "Input/output error")
        return self.port.read(n)

    def write(self, data: bytes) -> int:
        if not self.plugged.is_set():
            raise OSError(5, "Input/output error")
        return self.port.write(data)

    def unplug(self) -> None:
        self.plugged.clear()

    def replug(self) -> None:
        self.port.reset_input_buffer()
        self.plugged.set()


def uplink_seqs(db: Path) -> list[tuple[int, int]]:
    con = sqlite3.connect(str(db))
    try:
        return [(r[0], r[1]) for r in con.execute("SELECT g, s FROM uplink WHERE s IS NOT NULL ORDER BY g, s")]
    except sqlite3.OperationalError:   # the bridge created the file but not yet its tables
        return []
    finally:
        con.close()


def contiguous(seqs: list[tuple[int, int]]) -> list[str]:
    """Gaps in s per gateway boot g (a gap = messages the gateway sent that the store does not have)."""
    by: dict[int, list[int]] = {}
    for g, s in seqs:
        by.setdefault(g, []).append(s)
    gaps = []
    for g, ss in by.items():
        for a, b in zip(ss, ss[1:], strict=False):
            if b != a + 1:
                gaps.append(f"g{g}: {a}->{b}")
    return gaps


def test_farm_telemetry_discovery_relay_command_and_broker_outage(tmp_path: Path, broker: Mosquitto) -> None:
    sub = Subscriber(broker.port, ["fieldlink/#", "homeassistant/#"])
    with Farm(nodes=3, workdir=tmp_path / "farm", seed=3, node_options={"telemetry_batch": 2}) as farm:
        farm.disconnect()
        assert farm.port is not None
        plug = UnpluggablePort(farm.port)
        cfg = BridgeConfig(db=str(tmp_path / "b.db"), bridge_id="farm1", mqtt=MqttConfig(url=broker.url))
        bridge = Bridge(cfg, plug.factory).start()   # type: ignore[arg-type]
        nodes = [mac_hex(node_mac(i)) for i in range(1, 4)]
        try:
            def tel_topics() -> set[str]:
                return {t for t, _ in sub.json(lambda t: "/telemetry/" in t)}
            wait_until(lambda: all(f"{ROOT_T}/{n}/telemetry/sht" in tel_topics() for n in nodes), 90,
                       "telemetry of the 3 nodes on MQTT")
            first = sub.json(lambda t: t == f"{ROOT_T}/{nodes[0]}/telemetry/sht")[0][1]
            assert 10 < first["values"]["temperature"] < 40 and first["ts"] <= time.time() * 1000
            wait_until(lambda: any(t.startswith(f"homeassistant/switch/fieldlink_{nodes[0]}/relay_fan")
                                   for t, _ in sub.json(lambda t: True)), 60, "relay discovery (heartbeat)")
            disc = dict(sub.json(lambda t: t.startswith("homeassistant/")))
            temp = disc[f"homeassistant/sensor/fieldlink_{nodes[0]}/sht_temperature/config"]
            assert temp["state_topic"] == f"{ROOT_T}/{nodes[0]}/telemetry/sht"
            gw_cfgs = [p for t, p in disc.items() if p["device"]["identifiers"] == [temp["device"]["via_device"]]]
            assert gw_cfgs, "the gateway device named in via_device was published"
            # a command from MQTT switches the node's relay; its ack and the new state arrive
            sub.publish(f"{ROOT_T}/{nodes[0]}/cmd",
                        json.dumps({"id": "fan-1", "op": "relay", "a": {"name": "fan", "op": "on"}}))
            wait_until(lambda: any(p.get("id") == "fan-1" and p.get("cmd_state") == "done"
                                   for _, p in sub.json(lambda t: t.endswith("/ack"))), 60, "relay ack")
            ack = [p for _, p in sub.json(lambda t: t.endswith("/ack")) if p.get("id") == "fan-1"][-1]
            assert ack["ok"] and ack["r"] == {"ok": True, "name": "fan", "on": True}
            wait_until(lambda: any(isinstance(p, dict) and p.get("ev") == "relay"
                                   for _, p in sub.json(lambda t: t == f"{ROOT_T}/{nodes[0]}/event")), 60,
                       "relay event from the node")
            # broker outage under load, then the gateway port vanishes and returns
            broker.stop()
            time.sleep(4)
            plug.unplug()
            time.sleep(3)
            plug.replug()
            wait_until(lambda: bridge.client is not None, 30, "serial reconnect")
            time.sleep(3)
            broker.start()
            n_stored = bridge.counters["readings"]
            wait_until(lambda: len({p["id"] for _, p in sub.json(lambda t: "/telemetry/" in t)}) >= n_stored,
                       90, "backlog delivered")
            assert bridge.counters["serial_reconnects"] >= 1
        finally:
            bridge.stop()
            sub.close()
    # every stored reading reached the subscriber, in outbox order; repeats carry the same id
    got = [p for _, p in sub.json(lambda t: "/telemetry/" in t)]
    ids: list[str] = []
    for p in got:
        if p["id"] not in ids:
            ids.append(p["id"])
    seqs = [int(i.split(":")[1]) for i in ids]
    assert seqs == sorted(seqs)
    per_node: dict[str, list[tuple[int, int, int]]] = {}
    for p in got:
        per_node.setdefault(p["node"], []).append((p["msg"]["boot"], p["msg"]["q"], p["msg"]["i"]))
    for node, keys in per_node.items():
        firsts = list(dict.fromkeys(keys))
        assert firsts == sorted(firsts), node
    # the store has no gap in the gateway's sequence beyond what the gateway ring dropped (ring 256:
    # nothing in a few seconds) -- the bytes lost with the unplug were resent
    assert contiguous(uplink_seqs(tmp_path / "b.db")) == []


def test_devices_and_info_carry_board_battery_and_the_gateways_join_window(tmp_path: Path, broker: Mosquitto) -> None:
    """bridge/devices has each node's board and battery from its heartbeat, bridge/info the join window as
    the gateway reports it: the farm opened it (600 s) before the bridge came, the bridge never asked."""
    sub = Subscriber(broker.port, [f"{ROOT_T}/bridge/#"], client_id="info-sub")
    # the virtual nodes have no battery gauge: their humidity (a percent reading) stands in for one
    with Farm(nodes=2, workdir=tmp_path / "farm", seed=7,
              node_options={"battery": "sht.relative_humidity", "heartbeat_s": 2}) as farm:
        farm.disconnect()
        assert farm.port is not None
        port = farm.port
        t0 = int(time.time() * 1000)
        bridge = Bridge(BridgeConfig(db=str(tmp_path / "i.db"), bridge_id="info", mqtt=MqttConfig(url=broker.url)),
                        lambda: port).start()   # type: ignore[arg-type,return-value]
        nodes = sorted(mac_hex(node_mac(i)) for i in range(1, 3))
        try:
            def devices() -> list[dict[str, Any]]:
                got = sub.json(lambda t: t == f"{ROOT_T}/bridge/devices")
                return list(got[-1][1]["devices"]) if got else []

            def ready() -> bool:
                ds = devices()
                return (sorted(d["mac"] for d in ds) == nodes
                        and all(isinstance(d["battery"], int | float) for d in ds))
            wait_until(ready, 90, "bridge/devices with both nodes and their battery")
            for d in devices():
                assert d["board"] == "sim-node" and 0 <= d["battery"] <= 100, d
            wait_until(lambda: any(p.get("permit_join") for _, p in sub.json(lambda t: t == f"{ROOT_T}/bridge/info")),
                       60, "permit_join from the gateway on bridge/info")
            info = [p for _, p in sub.json(lambda t: t == f"{ROOT_T}/bridge/info") if p.get("permit_join")][-1]
            # the end time comes from the gateway's seconds left of the farm's 600 s window
            assert t0 < info["permit_join_end"] <= t0 + 601_000, info
            sub.publish(f"{ROOT_T}/bridge/request/permit_join", json.dumps({"value": False, "transaction": 9}))
            wait_until(lambda: not bridge.gateway["permit_join"], 60, "join window closed")
            wait_until(lambda: any(p.get("permit_join") is False and p.get("permit_join_end") is None
                                   for _, p in sub.json(lambda t: t == f"{ROOT_T}/bridge/info")), 60,
                       "bridge/info says closed")
        finally:
            bridge.stop()
            sub.close()


def test_bridge_sigkilled_mid_stream_loses_nothing_acknowledged(tmp_path: Path) -> None:
    gateway = spawn_gateway_pty(tmp_path, nodes=5, ring=256)
    db = tmp_path / "k.db"
    cmd = [sys.executable, "-m", "fieldlink_host", "bridge", "--port", gateway.port, "--db", str(db),
           "--bridge-id", "k"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        for round_ in range(2):
            p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            try:
                wait_until(lambda n=round_: db.exists() and len(uplink_seqs(db)) > 20 * (n + 1), 60,
                           "bridge storing")
            finally:
                p.send_signal(signal.SIGKILL)
                p.wait(10)
            time.sleep(1.5)   # the gateway notices the host is gone and buffers
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            before = len(uplink_seqs(db))
            wait_until(lambda: len(uplink_seqs(db)) > before + 20, 60, "bridge storing after restart")
        finally:
            p.send_signal(signal.SIGTERM)
            out = p.communicate(timeout=20)[0].decode(errors="replace")
        assert p.returncode == 0, out
        assert "Traceback" not in out, out
        assert gateway.alive(), gateway.log()
    finally:
        gateway.stop()
    seqs = uplink_seqs(db)
    assert contiguous(seqs) == [], seqs[-50:]
    con = sqlite3.connect(str(db))
    try:
        dup = con.execute("SELECT node, boot, q, COUNT(*) c FROM teldedup GROUP BY node, boot, q HAVING c > 1").fetchall()
        per_node = con.execute("SELECT node, COUNT(*) FROM teldedup GROUP BY node").fetchall()
    finally:
        con.close()
    assert not dup and len(per_node) == 5


@pytest.mark.slow
def test_200_nodes_through_one_gateway_and_the_bridge(tmp_path: Path, broker: Mosquitto) -> None:
    from fieldlink_host.virtual import VirtualBoard

    procs_n, per = 4, 50
    n = procs_n * per
    sub = Subscriber(broker.port, ["fieldlink/v1/farm/+/telemetry/#"])
    with Farm(nodes=0, workdir=tmp_path / "farm", seed=11) as farm:
        farm.disconnect()
        assert farm.port is not None and farm.air is not None
        port = farm.port
        bridge = Bridge(BridgeConfig(db=str(tmp_path / "s.db"), bridge_id="s", mqtt=MqttConfig(url=broker.url)),
                        lambda: port).start()  # type: ignore[arg-type,return-value]
        procs: list[Any] = []
        try:
            for p in range(procs_n):
                vb = VirtualBoard(tmp_path / f"multi{p}", mac=f"02:0e:00:00:00:{p:02x}", air=farm.air,
                                  entry="multinode_entry:main", extra_path=[HERE], chips=False, name=f"multi{p}",
                                  env={"MULTI_BASE": str(1 + p * per), "MULTI_COUNT": str(per),
                                       "MULTI_INTERVAL_MS": "8000", "MULTI_IDLE_MS": "20"})
                procs.append(vb.start())
            want = {mac_hex(node_mac(i)) for i in range(1, n + 1)}

            def on_mqtt() -> set[str]:
                return {t.split("/")[3] for t, _ in sub.json(lambda t: True)}
            wait_until(lambda: want <= on_mqtt(), 150, "telemetry of all 200 nodes on MQTT")
            assert want <= set(bridge.devices)
        finally:
            for vb in procs:
                vb.stop()
            bridge.stop()
            sub.close()
