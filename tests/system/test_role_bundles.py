"""Per-role bundles (docs/deploy.md "Per-role bundles"): `fieldlink build` ships the modules the
board's role imports and nothing else, and of the drivers and relays only what the board config names.
Checked from the outside: the bundle alone (no device sources on the path) imports every module it
carries and its role's entry on the real MicroPython unix port, the other role's entry is absent,
host-only code is never there, a board gets exactly the drivers its sensors use, and the sizes (OTA
included) meet the targets against a bundle of the whole package built from the same sources."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fieldlink_host.boards import Board, list_boards, load_board
from fieldlink_host.build import build_bundle
from fieldlink_host.paths import micropython_binary

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / "device" / "sim"
PKG = ROOT / "device" / "fieldlink"


#: boards/ with a role that `fieldlink build` bundles (CircuitPython boards get a CIRCUITPY tree instead)
MPY_BOARDS = sorted(b.name for b in list_boards() if b.role and b.runtime == "micropython")
#: drivers a driver module imports itself (read off device/fieldlink/drivers/*.py): mq135 reads its
#: voltage with analog_lux's helper
DRIVER_IMPORTS = {"mq135": {"analog_lux"}}


def _build(board: str | Board, out: Path, device_pkg: Path | None = None) -> dict[str, int]:
    b = build_bundle(board, out, arch="x64", revision="r", device_pkg=device_pkg)
    return {f.path: f.size for f in b.files}


def _mpy_modules(files: dict[str, int]) -> list[str]:
    mods = []
    for p in files:
        if p.startswith("fieldlink/") and p.endswith(".mpy"):
            m = p[:-4].replace("/", ".")
            mods.append(m[: -len(".__init__")] if m.endswith(".__init__") else m)
    return sorted(mods)


def _drivers(files: dict[str, int]) -> set[str]:
    return {p[len("fieldlink/drivers/"):-4] for p in files if p.startswith("fieldlink/drivers/")} - {"__init__", "base"}


def _imports_on_unix_port(bundle: Path, modules: list[str], absent: str) -> str:
    script = bundle.parent / (bundle.name + "_check.py")
    script.write_text(
        "import sys\n"
        f"for m in {modules!r}:\n"
        "    __import__(m)\n"
        "try:\n"
        f"    __import__({absent!r})\n"
        "    print('PRESENT')\n"
        "except ImportError:\n"
        "    print('ABSENT')\n"
        "print('OK', len(sys.modules))\n")
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([str(bundle), str(SIM), ".frozen"]))
    proc = subprocess.run([micropython_binary(), str(script)], capture_output=True, text=True, env=env,
                          timeout=120, cwd=str(bundle.parent))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_each_role_bundle_carries_only_its_role(tmp_path: Path) -> None:
    gw = _build("sim-gateway", tmp_path / "gw")
    node = _build("sim-node", tmp_path / "node")
    # the gateway carries no node, sensors, drivers or rules; the node no gateway or serial uplink
    assert not [p for p in gw if p.startswith(("fieldlink/node/", "fieldlink/drivers/", "fieldlink/rules/"))], gw
    assert "fieldlink/gateway/start.mpy" in gw and "fieldlink/link/gateway_link.mpy" in gw
    assert "fieldlink/link/node_link.mpy" not in gw
    assert not [p for p in node if p.startswith("fieldlink/gateway/")], node
    assert "fieldlink/node/start.mpy" in node and "fieldlink/rules/engine.mpy" in node
    assert "fieldlink/link/gateway_link.mpy" not in node
    for files in (gw, node):
        assert not [p for p in files if "replay" in p], files  # host-only simulator code
        assert "main.mpy" in files and "fieldlink/main.mpy" in files
    # the bundle alone imports everything it carries and its role's entry; the other role is absent
    out = _imports_on_unix_port(tmp_path / "gw", _mpy_modules(gw), "fieldlink.node.start")
    assert "ABSENT" in out and "OK" in out, out
    out = _imports_on_unix_port(tmp_path / "node", _mpy_modules(node), "fieldlink.gateway.start")
    assert "ABSENT" in out and "OK" in out, out


@pytest.mark.parametrize("board", MPY_BOARDS)
def test_every_board_bundle_imports_alone(board: str, tmp_path: Path) -> None:
    b = load_board(board)
    files = _build(board, tmp_path / "b")
    other = "node" if b.role == "gateway" else "gateway"
    assert not [p for p in files if p.startswith(f"fieldlink/{other}/")], files
    assert f"fieldlink/{b.role}/start.mpy" in files
    named = {str(s["driver"]) for s in b.sensors}
    assert _drivers(files) == named.union(*(DRIVER_IMPORTS.get(d, set()) for d in named)), files
    assert ("fieldlink/relays.mpy" in files) == bool(b.relays), files
    out = _imports_on_unix_port(tmp_path / "b", _mpy_modules(files), f"fieldlink.{other}.start")
    assert "ABSENT" in out and "OK" in out, out


@pytest.mark.parametrize("drivers", [(), ("bme280", "ds18b20"), ("mq135",), ("pzem004t", "synthetic")])
def test_a_board_gets_exactly_the_drivers_its_sensors_name(drivers: tuple[str, ...], tmp_path: Path) -> None:
    sensors = tuple({"name": f"s{i}", "driver": d, "pin": 4, "bus": "uart1" if d == "pzem004t" else "i2c0"}
                    for i, d in enumerate(drivers))
    board = dataclasses.replace(load_board("sim-node"), sensors=sensors, relays=())
    files = _build(board, tmp_path / "b")
    want = set(drivers).union(*(DRIVER_IMPORTS.get(d, set()) for d in drivers))
    assert _drivers(files) == want, files
    assert "fieldlink/drivers/base.mpy" in files and "fieldlink/node/sensors.mpy" in files
    assert "fieldlink/relays.mpy" not in files  # no relays on this board: nothing to drive or hold safe
    # every carried driver imports from the bundle alone, by the name the sensor manager uses; one no
    # sensor names is not there
    missing = "fieldlink.drivers." + ("sht4x" if "sht4x" not in want else "bh1750")
    out = _imports_on_unix_port(tmp_path / "b", _mpy_modules(files) + ["fieldlink.drivers." + d for d in drivers],
                                missing)
    assert "ABSENT" in out and "OK" in out, out


@pytest.mark.slow
def test_role_bundles_meet_the_size_targets(tmp_path: Path) -> None:
    # the whole package: the same sources (fieldlink/ota included) without the role entry modules are
    # bundled whole, every driver and the relays with them
    whole_pkg = tmp_path / "src" / "fieldlink"
    shutil.copytree(PKG, whole_pkg, ignore=shutil.ignore_patterns("__pycache__", "start.py"))
    ota = "fieldlink/ota/"
    sizes = {}
    for board in ("sim-gateway", "sim-node"):
        whole_files = _build(board, tmp_path / ("whole-" + board), whole_pkg)
        role_files = _build(board, tmp_path / board)
        assert any(p.startswith(ota) for p in role_files), board  # both roles verify their own updates
        assert [p for p in whole_files if p.startswith("fieldlink/drivers/")] == \
            [f"fieldlink/drivers/{m}.mpy" for m in sorted(p.stem for p in (PKG / "drivers").glob("*.py"))]
        whole = sum(whole_files.values())
        role = sum(role_files.values())
        ota_size = sum(v for p, v in role_files.items() if p.startswith(ota))
        sizes[board] = (role, whole)
        print(board, role, whole, f"{100.0 * role / whole:.1f}%", "of which ota", ota_size)
    (tmp_path / "sizes.json").write_text(json.dumps(sizes))
    gw_role, gw_whole = sizes["sim-gateway"]
    node_role, node_whole = sizes["sim-node"]
    assert gw_role <= 0.60 * gw_whole, sizes
    assert node_role <= 0.85 * node_whole, sizes
