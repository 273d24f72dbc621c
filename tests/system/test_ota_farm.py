"""OTA over ESP-NOW end to end on the virtual farm: a gateway and 5 virtual nodes (real micropython
processes, real link over the UDP air hub) updated from the host with `fieldlink ota push`'s library
function on the farm's uplink connection: a signed rules package (fieldlink ota make), canaries then
waves, one node power-cycled in the middle of its transfer, which resumes from its last written block.
Every node verifies the signature with its own trust store and runs the new program afterwards."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fieldlink_host.build import owner_keys_document
from fieldlink_host.commands.ota_push import push
from fieldlink_host.farm import Farm, mac_hex, node_mac
from fieldlink_host.keys import new_keypair
from fieldlink_host.ota.package import make_package
from fieldlink_host.ota.rollout import RolloutState, format_table
from fieldlink_host.rules.compiler import compile_file

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_five_nodes_updated_over_esp_now_one_power_cycled(tmp_path: Path) -> None:
    kp = new_keypair(tmp_path / "keys")
    prog = compile_file(ROOT / "tests" / "fixtures" / "rules" / "greenhouse.rules.yaml", "sim-node").program
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "gh.bin").write_bytes(prog)
    pkg = make_package(tmp_path / "pkg" / "gh.bin", kp.private, kind="rules", board="sim-node", version="gh-2",
                       counter=7)
    work = tmp_path / "farm"
    doc = owner_keys_document([kp.public])
    for i in range(1, 6):       # the owner key each node trusts (installed at build/deploy time)
        (work / f"node{i}").mkdir(parents=True)
        (work / f"node{i}" / "owner_keys.json").write_bytes(doc)
    victim = mac_hex(node_mac(1))
    # small chunks and windows so a ~1 KB update takes several windows (a power cut lands mid-transfer)
    with Farm(nodes=5, workdir=work, seed=13, gateway_options={"ota_chunk": 24, "ota_window": 4},
              node_options={"telemetry_batch": 1}) as farm:
        assert farm.client is not None and farm.air is not None
        client = farm.client
        seen: set[str] = set()
        end = time.monotonic() + 60
        while len(seen) < 5:
            assert time.monotonic() < end, f"nodes heard: {sorted(seen)}"
            m = client.recv(0.5)
            if m is not None and m.get("t") in ("tel", "nhb", "join"):
                seen.add(str(m.get("from")))
        # the victim's link is lossy until its power cut: its transfer is still running when it happens
        gw = "02fe00000001"
        farm.air.set_link(gw, victim, loss=0.5)
        cycled: list[float] = []

        def on_change(st: RolloutState) -> None:
            n = st.nodes[victim]
            if not cycled and n.state == "updating" and (n.progress or 0) > 30 and n.result == "pending":
                cycled.append(n.progress or 0)
                farm.boards[0].restart()            # power cut: the process dies and boots again
                farm.air.set_link(gw, victim, loss=0.0)

        st = push(pkg.manifest_path, client, "all", canary=20, halt_on=1, confirm_timeout=120,
                  wave_timeout=240, progress=False, on_change=on_change)
        table = format_table(st)
        assert not st.halted, table
        assert cycled, "the victim was not power-cycled during its transfer\n" + table
        assert [n.result for n in st.nodes.values()] == ["updated"] * 5, table
        assert st.waves[0] == [victim] and [len(w) for w in st.waves] == [1, 2, 2]
        gw_state: dict[str, Any] = client.request("ota_state", timeout=10)["r"]
        v = gw_state["nodes"][victim]
        assert v["state"] == "transferred" and v["resumes"] >= 1, v
        for mac in st.nodes:
            s = client.node_command(mac, "status", timeout=20)
            ota = s["st"]["ota"]
            assert ota["versions"].get("rules") == "gh-2" and ota["counters"].get("rules") == 7, (mac, ota)
        status = client.status(timeout=10)
        assert status["link"]["bad_auth"] == 0
        for b in farm.boards:
            assert b.running, b.lines[-30:]
