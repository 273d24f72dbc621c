"""Gateway uplink end to end: a real micropython gateway process on a pseudo-terminal, the host reading
it with pyserial through fieldlink_host.uplink. The radio side is the in-memory air (5 real nodes in the
gateway's process); tests/system/test_farm.py covers separate node processes on the simulated radio."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fieldlink_host.uplink import CommandFailed, UplinkClient  # noqa: E402
from test_farm_support import spawn_gateway_pty  # noqa: E402


@pytest.fixture
def gateway(tmp_path: Path):  # type: ignore[no-untyped-def]
    gw = spawn_gateway_pty(tmp_path, nodes=5, ring=64)
    yield gw
    alive = gw.alive()
    gw.stop()
    assert alive, gw.log()


def _collect(c: UplinkClient, seconds: float) -> list[dict]:
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        m = c.recv(0.1)
        if m is not None:
            out.append(m)
    return out


def test_telemetry_commands_and_status_over_pty(gateway) -> None:  # type: ignore[no-untyped-def]
    with UplinkClient(gateway.port) as c:
        boot = c.wait_for(lambda m: m["t"] == "boot", 10)
        assert boot["s"] == 1 and boot["fw"]
        assert c.ping()["pong"] == 1
        msgs = _collect(c, 3)
        tel = [m for m in msgs if m["t"] == "tel"]
        senders = {m["from"] for m in tel}
        assert len(senders) == 5
        assert all(r[0] == "syn" and "temperature" in r[1] for m in tel for r in m["d"]["r"])
        seqs = [m["s"] for m in msgs]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        node = sorted(senders)[0]
        r = c.node_command(node, "relay", name="fan", op="on")
        assert r == {"ok": True, "name": "fan", "on": True}
        with pytest.raises(CommandFailed) as ei:
            c.node_command(node, "relay", name="nope", op="on")
        assert ei.value.result["r"]["err"] == "unknown_relay"
        assert c.node_command(node, "self_test")["ok"]
        peers = c.peers()
        assert {p["mac"] for p in peers} == senders and all(p["fw"] for p in peers)
        t = c.time_sync(1_700_000_000_000)
        assert t["sent"] and t["ts"] >= 1_700_000_000_000
        assert c.pair_begin(30) == {"open": 30}
        st = c.status()
        assert st["nodes"] == 5 and st["gw"]["tel_rx"] >= 5 and st["ring_cap"] == 64
        assert c.stats.duplicates == 0


def test_gateway_buffers_while_host_away_and_flushes_in_order(tmp_path: Path) -> None:
    gateway = spawn_gateway_pty(tmp_path, nodes=5, ring=24)
    try:
        _buffer_and_flush(gateway)
        assert gateway.alive(), gateway.log()
    finally:
        gateway.stop()


def _buffer_and_flush(gateway) -> None:  # type: ignore[no-untyped-def]
    with UplinkClient(gateway.port) as c:
        c.wait_for(lambda m: m["t"] == "boot", 10)
        first = _collect(c, 1.5)
    first += list(c.messages(0.01))  # received before the port was closed
    last_seen = max(m["s"] for m in first)
    # the client hands messages over before it acknowledges them (never the reverse), so the last few
    # it saw may be unacknowledged when the port closes: those stay in the gateway's ring
    acked = c.stats.last_ack
    assert 0 < acked <= last_seen
    time.sleep(5)  # host away: ~5 tel/s + 2.5 heartbeats/s are buffered; the ring of 24 overflows
    with UplinkClient(gateway.port) as c2:
        msgs = _collect(c2, 4)
        seqs = [m["s"] for m in msgs]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert seqs[0] > acked
        st = c2.status()
    # everything the gateway did not have to drop arrived: the gap after the last acknowledged message
    # equals the ring's drop counter (what the host saw but had not acknowledged may be among the dropped)
    dropped = st["ring_dropped"]
    assert dropped > 0
    assert seqs[0] - acked - 1 == dropped, (acked, last_seen, seqs[:3], dropped)
    assert c2.stats.gaps == 0  # nothing missing after the first message of the new session
    per_node: dict[str, list[int]] = {}
    for m in msgs:
        if m["t"] == "tel":
            per_node.setdefault(m["from"], []).append(m["d"]["q"])
    assert len(per_node) == 5
    for qs in per_node.values():
        assert qs == sorted(qs)
