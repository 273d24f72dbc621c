"""Where the device code, the virtual board modules and the board files live (source tree or wheel)."""

from __future__ import annotations

import os
from pathlib import Path

import fieldlink
import fieldlink_sim

#: directory that contains the ``fieldlink`` device package (put on MICROPYPATH / deployed to boards)
DEVICE_ROOT = Path(fieldlink.__file__).resolve().parent.parent
#: the device package itself
DEVICE_PKG = Path(fieldlink.__file__).resolve().parent
#: directory holding the virtual board modules (machine, esp32, espnow, network, ...)
SIM_DIR = Path(fieldlink_sim.__file__).resolve().parent
#: board definition files
BOARDS_DIR = Path(os.environ.get("FIELDLINK_BOARDS", Path(__file__).resolve().parent / "boards"))


def micropython_path() -> str:
    """MICROPYPATH for running device code on the virtual board: sim modules first, then device code."""
    return os.pathsep.join([str(SIM_DIR), str(DEVICE_ROOT), ".frozen"])
