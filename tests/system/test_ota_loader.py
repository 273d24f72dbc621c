"""The loader files `fieldlink deploy`/`image` write (boot.py, main.py, flboot.py = fieldlink.ota.bootsel)
run by the MicroPython unix port in a board directory: an update on trial boots, a new app that raises
from its main module ends the trial and resets the board, the next boot runs the previous slot; a trial
that was never confirmed rolls back after 3 boots."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from fieldlink_host.deploy import LOADER_FILES
from fieldlink_host.paths import micropython_binary

ROOT = Path(__file__).resolve().parents[2]
BOOT = "exec(open('boot.py').read()); exec(open('main.py').read())"


def _board(tmp: Path) -> Path:
    d = tmp / "board"
    for slot, body in (("a", "print('running A')\n"), ("b", "print('running B')\nraise RuntimeError('B is broken')\n")):
        (d / "fl" / slot).mkdir(parents=True)
        (d / "fl" / slot / "main.py").write_text(body)
    (d / "fl" / "active").write_text("a")
    for name, data in LOADER_FILES.items():
        (d / name).write_bytes(data)
    return d


def _boot(d: Path) -> subprocess.CompletedProcess[str]:
    assert (d / "fl" / "active").is_file() and d.resolve() != Path("/")  # the board's own directory
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([str(ROOT / "device" / "sim"), "", ".frozen"]))
    return subprocess.run([micropython_binary(), "-c", BOOT], cwd=d, capture_output=True, text=True, env=env,
                          timeout=120)


def test_trial_app_crashing_in_main_rolls_back_through_the_loader(tmp_path: Path) -> None:
    d = _board(tmp_path)
    assert "running A" in _boot(d).stdout  # no trial: the confirmed slot
    (d / "fl" / "trial").write_text("b 0")
    p = _boot(d)
    assert "running B" in p.stdout and p.returncode != 0  # B raised: machine.reset() ended the process
    assert not (d / "fl" / "trial").exists() and (d / "fl" / "rollback").read_text() == "crash"
    p = _boot(d)
    assert "running A" in p.stdout and p.returncode == 0


def test_unconfirmed_trial_rolls_back_after_three_boots(tmp_path: Path) -> None:
    d = _board(tmp_path)
    (d / "fl" / "b" / "main.py").write_text("print('running B')\n")  # boots fine, never confirms
    (d / "fl" / "trial").write_text("b 0")
    outs = [_boot(d).stdout for _ in range(4)]
    assert ["running B" in o for o in outs] == [True, True, True, False]
    assert "running A" in outs[3] and (d / "fl" / "rollback").read_text() == "unconfirmed"
