"""The device runtime over the REAL virtual air: every board is its own ``micropython`` process running
``fieldlink.main.run()`` (gateway on a pseudo-terminal uplink, nodes with fake I2C chips fed by a
scenario), and every ESP-NOW frame goes through the UDP air hub (device/sim/air.py) with its link model.
Unlike test_farm_uplink.py / test_scale_uplink.py (nodes in-process over a fake link), this exercises the
real link layer: pairing, ACKs/retries, dedup, fragments, peer registration, rescans.

Scale (200 nodes) and bad input on the air are in test_farm_air_scale.py / test_farm_air_bad.py."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fieldlink_host.farm import Farm, mac_hex, node_mac
from fieldlink_host.uplink import UplinkClient

Msg = dict[str, Any]


class Log:
    """Everything the host received, in arrival order, with helpers to wait for conditions."""

    def __init__(self) -> None:
        self.msgs: list[Msg] = []

    def pump(self, client: UplinkClient, until: Callable[[], bool] | None = None, timeout: float = 20.0,
             what: str = "condition") -> None:
        end = time.monotonic() + timeout
        while until is None or not until():
            left = end - time.monotonic()
            if left <= 0:
                if until is None:
                    return
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; "
                                     f"got {self.summary()}")
            m = client.recv(min(left, 0.2))
            if m is not None:
                self.msgs.append(m)

    def of(self, t: str, mac: str | None = None) -> list[Msg]:
        return [m for m in self.msgs if m.get("t") == t and (mac is None or m.get("from") == mac)]

    def summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.msgs:
            k = f"{m.get('t')}:{m.get('from', '')}"
            out[k] = out.get(k, 0) + 1
        return out


def macs(n: int) -> list[str]:
    return [mac_hex(node_mac(i)) for i in range(1, n + 1)]


def readings(msgs: list[Msg], sensor: str, quantity: str) -> list[float]:
    out = []
    for m in msgs:
        for entry in m["d"]["r"]:
            if entry[0] == sensor and quantity in entry[1]:
                out.append(float(entry[1][quantity]))
    return out


@pytest.fixture
def farm5(tmp_path: Path) -> Iterator[Farm]:
    with Farm(nodes=5, workdir=tmp_path, seed=5, node_options={"telemetry_batch": 2}) as farm:
        yield farm


def test_five_nodes_telemetry_relay_command_and_restart(farm5: Farm) -> None:
    farm = farm5
    assert farm.client is not None
    client = farm.client
    log = Log()
    nodes = macs(5)
    # every node joins through the pairing window and sends telemetry (twice, so it keeps sending)
    log.pump(client, lambda: all(len(log.of("tel", m)) >= 2 for m in nodes), timeout=40,
             what="2 telemetry messages from each of 5 nodes")
    assert {m["from"] for m in log.of("join")} == set(nodes)
    for i, mac in enumerate(nodes, start=1):
        tel = log.of("tel", mac)
        assert all(m["d"]["boot"] == tel[0]["d"]["boot"] for m in tel)
        assert [m["d"]["q"] for m in tel] == list(range(1, len(tel) + 1))   # in order, none missing
        assert all(-127 <= m["rssi"] <= 0 for m in tel)
        # scenario: node i's SHT4x temperature is a day/night curve of mean 21+i, amplitude 6 (+noise)
        temps = readings(tel, "sht", "temperature")
        hums = readings(tel, "sht", "relative_humidity")
        lux = readings(tel, "light", "lux")
        assert temps and hums, tel
        assert all(21 + i - 7 <= t <= 21 + i + 7 for t in temps), (i, temps)
        assert all(44 <= h <= 76 for h in hums), hums       # 60 -/+ 15 (+noise)
        assert all(0 <= x <= 16000 for x in lux), lux        # 8000 +/- 8000

    # a relay command goes down over the air, is applied, ACKed with the result and reported as an event
    target = nodes[2]
    r = client.node_command(target, "relay", name="fan", op="on", timeout=15)
    assert r == {"ok": True, "name": "fan", "on": True}
    log.pump(client, lambda: any(e["d"].get("ev") == "relay" for e in log.of("evt", target)), timeout=15,
             what="relay event")
    ev = [e for e in log.of("evt", target) if e["d"].get("ev") == "relay"]
    assert len(ev) == 1, ev
    assert ev[0]["d"]["d"]["relay"] == "fan" and ev[0]["d"]["d"]["state"] is True, ev
    assert ev[0]["d"]["d"]["reason"] == "command", ev
    assert not [e for m in nodes if m != target for e in log.of("evt", m)]
    st = client.node_command(target, "status", timeout=15)["st"]
    assert st["relays"]["fan"] is True and st["relays"]["pump"] is False
    assert st["c"]["cmds"] == 2 and st["c"]["tel_tx"] >= 2

    # a node power-cycles: it comes back with the stored pairing (no new join), a new boot id in its
    # heartbeat and telemetry, and keeps sending
    victim = nodes[0]
    boot0 = log.of("tel", victim)[0]["d"]["boot"]
    n_join = len(log.of("join"))
    mark = len(log.msgs)
    farm.boards[0].restart()
    log.pump(client, lambda: any(m.get("t") == "nhb" and m.get("from") == victim for m in log.msgs[mark:]),
             timeout=20, what="heartbeat after the restart")
    hb = [m for m in log.msgs[mark:] if m.get("t") == "nhb" and m.get("from") == victim]
    assert hb[0]["d"]["boot"] == boot0 + 1
    log.pump(client, lambda: len([m for m in log.msgs[mark:] if m.get("t") == "tel"
                                  and m.get("from") == victim]) >= 2, timeout=25,
             what="telemetry after the restart")
    after = [m for m in log.msgs[mark:] if m.get("t") == "tel" and m.get("from") == victim]
    assert all(m["d"]["boot"] == boot0 + 1 for m in after)
    assert [m["d"]["q"] for m in after][:2] == [1, 2]
    assert len(log.of("join")) == n_join               # resumed with its stored pairing
    # the gateway and the other nodes carried on
    gw = client.status(timeout=10)
    assert gw["nodes"] == 5
    assert gw["link"]["bad_msgpack"] == 0 and gw["link"]["bad_auth"] == 0
    for b in farm.boards:
        assert b.running, b.lines[-20:]
    assert farm.gateway is not None and farm.gateway.running
    assert client.stats.duplicates == 0 and client.stats.gaps == 0   # each gateway frame written once


def _seqs(msgs: list[Msg]) -> list[int]:
    return [int(m["s"]) for m in msgs if isinstance(m.get("s"), int)]


def test_gateway_buffers_while_host_is_away_and_flushes_in_order(tmp_path: Path) -> None:
    ring = 24
    with Farm(nodes=5, workdir=tmp_path, seed=6, gateway_options={"ring_buffer": ring},
              node_options={"telemetry_batch": 2, "heartbeat_s": 10}) as farm:
        assert farm.client is not None
        log = Log()
        nodes = macs(5)
        log.pump(farm.client, lambda: all(log.of("tel", m) for m in nodes), timeout=40,
                 what="telemetry from every node")

        def away(seconds: float) -> tuple[int, list[Msg], dict[str, Any]]:
            assert farm.client is not None
            before = farm.client.status(timeout=10)
            log.pump(farm.client, timeout=0.5)          # take what is in flight
            client = farm.client
            farm.disconnect()
            # the reader thread acknowledged every message it queued until it stopped: take those too,
            # or a message acked between the pump and the disconnect looks like a ring drop (a race
            # that a loaded machine hits)
            while (m := client.recv(0)) is not None:
                log.msgs.append(m)
            seen = max(_seqs(log.msgs))
            client.send({"t": "ack", "s": seen})     # the last ack of the host that goes away
            time.sleep(seconds)                      # ... nobody reads, acks or sends heartbeats
            back = farm.reconnect()
            got = Log()
            got.pump(back, timeout=3.0)              # the flush, then live traffic
            after = back.status(timeout=10)
            got.pump(back, timeout=0.5)
            log.msgs.extend(got.msgs)
            assert back.stats.duplicates == 0
            return seen, got.msgs, {"before": before, "after": after}

        # 1. short absence: everything buffered arrives, oldest first, no gap
        seen, msgs, st = away(5.0)
        s = _seqs(msgs)
        assert s and s[0] == seen + 1, (seen, s[:5])
        assert s == list(range(s[0], s[0] + len(s))), s
        assert st["after"]["ring_dropped"] == st["before"]["ring_dropped"] == 0
        assert len([m for m in msgs if m["t"] == "tel"]) >= 5   # the nodes kept sending meanwhile

        # 2. long absence: the ring overflows, the oldest are dropped and the jump in s equals the count
        seen2, msgs2, st2 = away(16.0)
        s2 = _seqs(msgs2)
        dropped = st2["after"]["ring_dropped"] - st2["before"]["ring_dropped"]
        assert dropped > 0, st2
        assert s2[0] - seen2 - 1 == dropped, (seen2, s2[:3], dropped)
        assert s2 == list(range(s2[0], s2[0] + len(s2))), s2
        # per node, the telemetry that survived is still in order with the node's own sequence
        for mac in nodes:
            q = [m["d"]["q"] for m in msgs2 if m["t"] == "tel" and m["from"] == mac]
            assert q == sorted(set(q)), (mac, q)
        assert farm.gateway is not None and farm.gateway.running


def test_link_under_loss_and_duplication_is_exactly_once(tmp_path: Path) -> None:
    """20 % loss on every air link, 10 % duplicated frames: commands are applied exactly once (the node's
    command counter and relay events count them) and every telemetry message reaches the host once
    (node sequence ``q`` per boot: 1, 2, 3 ... none twice, none skipped), as many as the node says it
    sent."""
    n_nodes, n_pings = 3, 12
    with Farm(nodes=n_nodes, workdir=tmp_path, seed=7, loss=0.2, air_link={"dup": 0.1},
              node_options={"telemetry_batch": 2, "heartbeat_s": 5}) as farm:
        assert farm.client is not None and farm.air is not None
        client = farm.client
        log = Log()
        nodes = macs(n_nodes)
        log.pump(client, lambda: all(log.of("tel", m) for m in nodes), timeout=50,
                 what="telemetry from every node under loss")
        target = nodes[0]
        for i in range(n_pings):
            r = client.node_command(target, "ping", n=i, timeout=30)
            assert r["ok"] and r["pong"] == i
            log.pump(client, timeout=0.05)
        toggles = 3
        for k in range(toggles):
            if k:
                log.pump(client, timeout=2.2)          # min_switch_ms 2000 between relay changes
            r = client.node_command(target, "relay", name="pump", op="toggle", timeout=30)
            assert r["ok"] and r["on"] is (k % 2 == 0), r
        log.pump(client, lambda: all(len(log.of("tel", m)) >= 3 for m in nodes), timeout=40,
                 what="three telemetry messages from every node under loss")
        status = {m: client.node_command(m, "status", timeout=30)["st"] for m in nodes}
        log.pump(client, timeout=1.0)
        # exactly once: every command ran once (the status command itself is the +1)
        assert status[target]["c"]["cmds"] == n_pings + toggles + 1, status[target]["c"]
        assert status[target]["relays"]["pump"] is True
        ev = [e["d"]["d"] for e in log.of("evt", target) if e["d"].get("ev") == "relay"]
        assert [(e["relay"], e["state"]) for e in ev] == [("pump", True), ("pump", False), ("pump", True)], ev
        for mac in nodes:
            st = status[mac]
            tel = [m for m in log.of("tel", mac) if m["d"]["boot"] == st["boot"]]
            q = [m["d"]["q"] for m in tel]
            # exactly once: a message whose ACKs were all lost is repeated with the same q (and body)
            # until ACKed, so the host has every q of this boot once, in order, none skipped
            assert q == list(range(1, len(q) + 1)), (mac, q)
            c = st["c"]
            # everything the node counted as delivered (ACKed) by its status snapshot is here (more may
            # have arrived since: messages in flight, or sent while the other nodes answered)
            assert len(q) >= 3 and c["tel_tx"] <= len(q), (mac, len(q), c)
        gw = client.status(timeout=20)
        link = gw["link"]
        assert link["retries"] > 0 and link["duplicate"] > 0, link   # the loss and dups did happen
        stats = farm.air.stats()
        assert stats["lost"] > 0, stats
        assert client.stats.duplicates == 0 and client.stats.gaps == 0
