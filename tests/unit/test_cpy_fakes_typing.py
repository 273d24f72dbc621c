"""The CircuitPython fakes (device/sim/circuitpython) against circuitpython-stubs, with mypy's stubtest:
every class, function and signature the fakes define must match the stubs (names, parameters, kinds,
defaults), and every stub name must exist unless the allowlist says why not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "device" / "sim" / "circuitpython"
SIM = ROOT / "device" / "sim"
MODULES = ["board", "busio", "digitalio", "analogio", "espnow", "wifi", "microcontroller", "nvm", "alarm",
           "supervisor", "watchdog"]


def _stubtest(path_first: Path, modules: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(path_first), str(FAKES), str(SIM)])
    env.pop("MYPYPATH", None)
    cmd = [sys.executable, "-m", "mypy.stubtest", *modules, "--concise",
           "--allowlist", str(FAKES / "stubtest-allowlist.txt")]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_fakes_match_circuitpython_stubs(tmp_path: Path) -> None:
    proc = _stubtest(FAKES, MODULES, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "unused allowlist entry" not in proc.stdout, proc.stdout


def test_a_wrong_signature_is_caught(tmp_path: Path) -> None:
    # negative control: a busio whose I2C.writeto lost its keyword-only start/end must fail the check
    bad = tmp_path / "bad"
    bad.mkdir()
    src = (FAKES / "busio.py").read_text()
    broken = src.replace("def writeto(self, address, buffer, *, start=0, end=_MAXSIZE):",
                         "def writeto(self, address, buffer):")
    assert broken != src
    (bad / "busio.py").write_text(broken)
    proc = _stubtest(bad, ["busio"], tmp_path)
    assert proc.returncode != 0
    assert "busio.I2C.writeto" in proc.stdout
