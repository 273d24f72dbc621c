"""Scale over the REAL virtual air: 200 real NodeLink/Node instances (4 micropython processes x 50
nodes, each node with its own simboard board and its own radio socket on the UDP air hub) through one
real gateway process (fieldlink.main.run, pty uplink). 200 board processes would not fit two cores;
tests/system/multinode_entry.py puts 50 boards in one asyncio loop (docs/virtual-board.md)."""

from __future__ import annotations

import time
from pathlib import Path

from fieldlink_host.farm import Farm, mac_hex, node_mac
from fieldlink_host.virtual import VirtualBoard

HERE = Path(__file__).resolve().parent
PROCS, PER_PROC = 4, 50
N = PROCS * PER_PROC


def test_200_nodes_join_and_report_through_one_gateway_over_the_air(tmp_path: Path) -> None:
    with Farm(nodes=0, workdir=tmp_path, seed=11) as farm:
        assert farm.client is not None and farm.air is not None
        client = farm.client
        procs = []
        try:
            for p in range(PROCS):
                vb = VirtualBoard(tmp_path / f"multi{p}", mac=f"02:0e:00:00:00:{p:02x}", air=farm.air,
                                  entry="multinode_entry:main", extra_path=[HERE], chips=False,
                                  name=f"multi{p}",
                                  env={"MULTI_BASE": str(1 + p * PER_PROC), "MULTI_COUNT": str(PER_PROC),
                                       "MULTI_INTERVAL_MS": "8000", "MULTI_IDLE_MS": "20"})
                procs.append(vb.start())
            for vb in procs:
                vb.wait_for("^multinode: started", timeout=30)
            want = {mac_hex(node_mac(i)) for i in range(1, N + 1)}
            joined: set[str] = set()
            tel: dict[str, list[dict]] = {}
            t0 = time.monotonic()
            end = t0 + 90
            while time.monotonic() < end and (len(joined) < N or len(tel) < N
                                               or min(len(v) for v in tel.values()) < 2):
                m = client.recv(0.5)
                if m is None:
                    continue
                if m["t"] == "join":
                    joined.add(m["from"])
                elif m["t"] == "tel":
                    tel.setdefault(m["from"], []).append(m)
            took = time.monotonic() - t0
            missing = sorted(mac for mac in want if len(tel.get(mac, ())) < 2)   # each keeps sending
            assert joined == want, (len(joined), sorted(want - joined)[:10], [vb.lines[-3:] for vb in procs])
            assert not missing, (len(missing), missing[:10], [vb.lines[-3:] for vb in procs])
            for mac, msgs in tel.items():
                q = [x["d"]["q"] for x in msgs]
                assert len(q) == len(set(q)), (mac, q)
                for x in msgs:
                    for _sensor, values, _age in x["d"]["r"]:
                        assert 0 < values["temperature"] < 40 and 0 <= values["relative_humidity"] <= 100
            # commands to more nodes than the radio has registration slots: LRU rotation
            targets = sorted(want)[::7]          # 29 nodes
            for mac in targets:
                r = client.node_command(mac, "ping", n=1, timeout=30)
                assert r["ok"] and r["pong"] == 1
            st = client.status(timeout=20)
            assert st["nodes"] == N
            assert st["radio_peers"] is not None and st["radio_peers"] <= 20, st["radio_peers"]
            assert st["link"]["evictions"] > 0 and st["link"]["join_accepted"] >= N
            assert st["gw"]["cmds_ok"] == len(targets)
            print(f"200 nodes: all joined and reported within {took:.1f} s; gateway link {st['link']}")
            for vb in procs:
                assert vb.running, vb.lines[-20:]
        finally:
            for vb in procs:
                vb.stop()
