"""The CircuitPython port (device/fieldlink/port/cpy.py) type-checked with mypy --strict against
circuitpython-stubs: its type comments and every call into board, busio, digitalio, analogio, espnow,
wifi, microcontroller, watchdog and alarm must match CircuitPython's real signatures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CPY = ROOT / "device" / "fieldlink" / "port" / "cpy.py"


def _mypy(path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "mypy", "--strict", "--python-version", "3.11", "--no-incremental",
           "--follow-imports=silent", "--cache-dir", str(cwd / ".mypy_cache"), str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd)


def test_cpy_port_matches_circuitpython_stubs(tmp_path: Path) -> None:
    proc = _mypy(CPY, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout


def test_a_wrong_call_is_caught(tmp_path: Path) -> None:
    # negative control: busio.I2C takes `frequency`, not MicroPython's `freq`; DigitalInOut has no `.on()`
    src = CPY.read_text()
    bad = src.replace("frequency=freq if isinstance(freq, int) else 100000", "freq=freq")
    bad = bad.replace("        self.io.value = True\n", "        self.io.on()\n")
    assert bad != src
    p = tmp_path / "cpy.py"
    p.write_text(bad)
    proc = _mypy(p, tmp_path)
    assert proc.returncode != 0
    assert 'Unexpected keyword argument "freq"' in proc.stdout, proc.stdout
    assert '"DigitalInOut" has no attribute "on"' in proc.stdout, proc.stdout
