"""`fieldlink sim`: the README's main job. Three virtual nodes and a gateway, all real micropython
processes on the virtual air, and the host prints the telemetry it receives over the gateway's pty."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from fieldlink_host.farm import format_message, mac_hex, node_mac


def test_fieldlink_sim_shows_readings_from_three_boards() -> None:
    proc = subprocess.run([sys.executable, "-m", "fieldlink_host", "sim", "--seconds", "14"],
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    for i in (1, 2, 3):
        assert re.search(rf"node{i}\s+joined the gateway", out), out
        # a telemetry line with a plausible SHT4x temperature (scenario: 21+i +/- 6 degC day/night)
        temps = [float(t) for t in re.findall(rf"node{i}\s+telemetry.*?temperature=(-?[0-9.]+)", out)]
        assert temps, out
        assert all(0.0 < t < 40.0 for t in temps), temps
    summary = re.search(r"telemetry messages per node: (.*)", out)
    assert summary, out
    counts = dict(re.findall(r"(node\d+): (\d+)", summary.group(1)))
    assert set(counts) == {"node1", "node2", "node3"} and all(int(v) >= 1 for v in counts.values())


def test_format_message_renders_telemetry_events_and_ignores_bookkeeping() -> None:
    names = {mac_hex(node_mac(1)): "node1"}
    tel = {"t": "tel", "from": "020000000001", "rssi": -50,
           "d": {"q": 1, "r": [["sht", {"temperature": 21.25, "relative_humidity": 50.0, "valid": True}, 0]]}}
    line = format_message(tel, names)
    assert line is not None
    assert line.startswith("node1") and "temperature=21.25" in line and "valid" not in line
    evt = {"t": "evt", "from": "020000000001", "d": {"ev": "relay", "sev": "info", "d": {"name": "fan"}}}
    assert "relay" in (format_message(evt, names) or "")
    assert "1 readings" in line
    two = {"t": "tel", "from": "020000000001", "rssi": -50,
           "d": {"r": [["sht", {"temperature": 20.0}, 900], ["sht", {"temperature": 20.5}, 0]]}}
    two_line = format_message(two, names) or ""
    assert "2 readings" in two_line and "temperature=20.50" in two_line and "20.00" not in two_line
    assert format_message({"t": "ack", "s": 3}, names) is None
    # malformed telemetry entries are skipped, not fatal
    assert format_message({"t": "tel", "from": "x", "d": {"r": [None, ["a"], ["b", 3]]}}, names) is not None


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append(f"{d.name}: {cmd}")
    return found


def test_fieldlink_sim_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    work = tmp_path / "farm"
    proc = subprocess.Popen([sys.executable, "-m", "fieldlink_host", "sim", "--workdir", str(work)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "telemetry" in line and "readings" in line:
            break
    assert any("telemetry" in ln for ln in lines), "".join(lines)
    assert _processes_mentioning(str(work)), "the boards should be running"
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal goes to the whole foreground group
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, "".join(lines) + rest
    assert "Traceback" not in rest, rest
    time.sleep(0.5)
    assert _processes_mentioning(str(work)) == [], "board processes left behind"


def _processes_with_env(marker: str) -> list[str]:
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or d.name == str(os.getpid()):
            continue
        try:
            if marker.encode() in (d / "environ").read_bytes():
                found.append(f"{d.name}: {(d / 'cmdline').read_bytes()[:120]!r}")
        except OSError:
            continue
    return found


def test_fieldlink_sim_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    # SIGTERM to the fieldlink process alone (like `kill PID` or a service manager): the air hub and
    # every board process stop, the temporary farm directory is removed
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    marker = f"FIELDLINK_TEST_MARK={os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "TMPDIR": str(tmp), marker.split("=")[0]: marker.split("=")[1]}
    proc = subprocess.Popen([sys.executable, "-m", "fieldlink_host", "sim", "--nodes", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "joined the gateway" in line or "telemetry" in line:
            break
    assert len(_processes_with_env(marker)) >= 3, "".join(lines)  # fieldlink, air hub, gateway, node
    assert list(tmp.iterdir()), "the farm should have a temporary directory"
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143, "".join(lines) + rest
    assert "Traceback" not in rest and "fieldlink: terminated" in rest, rest
    end = time.monotonic() + 10
    while _processes_with_env(marker) and time.monotonic() < end:
        time.sleep(0.2)
    assert _processes_with_env(marker) == [], "processes left behind"
    assert list(tmp.iterdir()) == [], "temporary directories left behind"
