"""Scale: 200 node instances (one asyncio loop, distinct MACs, in-memory air) through one real gateway
process and its pty uplink; the host sees every node's telemetry and commands still get ACKed."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fieldlink_host.uplink import UplinkClient  # noqa: E402
from test_farm_support import spawn_gateway_pty  # noqa: E402

N = 200


@pytest.mark.slow
def test_200_nodes_through_one_gateway(tmp_path: Path) -> None:
    gw = spawn_gateway_pty(tmp_path, nodes=N, ring=1024, extra=["--interval", "2000", "--hb", "10", "--tick", "250"])
    try:
        with UplinkClient(gw.port) as c:
            c.wait_for(lambda m: m["t"] == "boot", 20)
            seen: set[str] = set()
            hb: set[str] = set()
            end = time.monotonic() + 40
            while time.monotonic() < end and (len(seen) < N or len(hb) < N):
                m = c.recv(0.5)
                if m is None:
                    continue
                if m["t"] == "tel":
                    seen.add(m["from"])
                elif m["t"] == "nhb":
                    hb.add(m["from"])
            assert len(seen) == N, len(seen)
            assert len(hb) == N, len(hb)
            for mac in sorted(seen)[::67]:
                assert c.node_command(mac, "relay", name="fan", op="on", timeout=20)["on"] is True
            st = c.status(timeout=10)
            assert st["nodes"] == N and st["gw"]["cmds_ok"] == 3
            assert c.stats.gaps == 0 and c.stats.bad_msgpack == 0
        assert gw.alive(), gw.log()
    finally:
        gw.stop()
