"""Per-role bundles (docs/deploy.md "Per-role bundles"): `fieldlink build` ships the modules the
board's role imports and nothing else. Checked from the outside: the bundle alone (no device sources on
the path) imports every module it carries and its role's entry on the real MicroPython unix port, the
other role's entry is absent, host-only code is never there, and the sizes meet the targets against a
bundle of the whole package built from the same sources."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fieldlink_host.build import build_bundle
from fieldlink_host.paths import micropython_binary

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / "device" / "sim"
PKG = ROOT / "device" / "fieldlink"


def _build(board: str, out: Path, device_pkg: Path | None = None) -> dict[str, int]:
    b = build_bundle(board, out, arch="x64", revision="r", device_pkg=device_pkg)
    return {f.path: f.size for f in b.files}


def _mpy_modules(files: dict[str, int]) -> list[str]:
    mods = []
    for p in files:
        if p.startswith("fieldlink/") and p.endswith(".mpy"):
            m = p[:-4].replace("/", ".")
            mods.append(m[: -len(".__init__")] if m.endswith(".__init__") else m)
    return sorted(mods)


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


@pytest.mark.slow
def test_role_bundles_meet_the_size_targets(tmp_path: Path) -> None:
    # the whole package: the same sources without role entry modules are bundled whole
    whole_pkg = tmp_path / "src" / "fieldlink"
    shutil.copytree(PKG, whole_pkg, ignore=shutil.ignore_patterns("__pycache__", "start.py"))
    # fieldlink/ota (signed OTA, issue 13) is carried by both roles and came after the 126 KB baseline
    # the targets refer to: it is measured on its own, not against them
    ota = "fieldlink/ota/"
    sizes = {}
    for board in ("sim-gateway", "sim-node"):
        whole_files = _build(board, tmp_path / ("whole-" + board), whole_pkg)
        role_files = _build(board, tmp_path / board)
        assert any(p.startswith(ota) for p in role_files), board  # both roles verify their own updates
        whole = sum(v for p, v in whole_files.items() if not p.startswith(ota))
        role = sum(v for p, v in role_files.items() if not p.startswith(ota))
        ota_size = sum(v for p, v in role_files.items() if p.startswith(ota))
        sizes[board] = (role, whole)
        print(board, role, whole, "%.0f%%" % (100.0 * role / whole), "+ ota", ota_size)
    (tmp_path / "sizes.json").write_text(json.dumps(sizes))
    gw_role, gw_whole = sizes["sim-gateway"]
    node_role, node_whole = sizes["sim-node"]
    assert gw_role <= 0.60 * gw_whole, sizes
    assert node_role <= 0.85 * node_whole, sizes
