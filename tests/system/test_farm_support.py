"""Helpers for the farm/scale/bad-input system tests (no tests here).

``spawn_gateway_pty`` starts a micropython process whose stdin/stdout is the master side of a fresh
pseudo-terminal (raw mode) and returns the slave path, which the host opens with pyserial through
:class:`fieldlink_host.uplink.UplinkClient` -- exactly as it would open the gateway's USB CDC port.
"""

from __future__ import annotations

import os
import subprocess
import tty
from pathlib import Path
from typing import Any

from fieldlink_host.paths import micropython_binary

ROOT = Path(__file__).resolve().parents[2]
ENTRY = Path(__file__).with_name("test_farm_entry.py")


def mpy_env() -> dict[str, str]:
    env = dict(os.environ)
    parts = [str(ROOT / "tests" / "device"), str(ROOT / "device" / "sim"), str(ROOT / "device"), ".frozen"]
    env["MICROPYPATH"] = os.pathsep.join(parts)
    return env


class PtyProcess:
    def __init__(self, args: list[str], log: Path) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([micropython_binary(), "-X", "heapsize=64M", *args], stdin=master, stdout=master,
                                     stderr=self._log, env=mpy_env(), cwd=str(ROOT))
        os.close(master)
        os.close(slave)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def spawn_gateway_pty(tmp: Path, nodes: int = 5, ring: int = 256, extra: list[str] | None = None) -> PtyProcess:
    return PtyProcess([str(ENTRY), "--nodes", str(nodes), "--ring", str(ring), *(extra or [])],
                      tmp / "gateway.log")


def tel_readings(msgs: list[dict[str, Any]]) -> int:
    return sum(len(m["d"].get("r", [])) for m in msgs if m.get("t") == "tel")
