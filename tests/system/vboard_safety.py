"""Guard for tests that run destructive commands (rm, cp over, deploy) against a virtual board: first
prove that the board's "/" is the board's own flash filesystem, not the host's."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from fieldlink_host.virtual import BoardFlash

HOST_ROOT_NAMES = {"etc", "usr", "bin", "proc", "dev", "home", "root", "tmp", "var", "work"}


def board_root_listing(port: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "mpremote", "connect", port, "exec",
                           "import os; print(sorted(os.listdir('/')))"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listing = ast.literal_eval(proc.stdout.strip().splitlines()[-1])
    assert isinstance(listing, list)
    return [str(x) for x in listing]


def assert_board_root_is_own(port: str, board_dir: str | Path) -> list[str]:
    """The board's "/" lists exactly the files in its flash image (read with littlefs-python) and
    nothing of the host's root. Call before every destructive command."""
    listing = board_root_listing(port)
    own = BoardFlash(board_dir).listdir("/")
    assert listing == own, f"board / lists {listing}, its flash holds {own}"
    assert not HOST_ROOT_NAMES & set(listing), listing
    assert listing != sorted(os.listdir("/"))
    return listing
