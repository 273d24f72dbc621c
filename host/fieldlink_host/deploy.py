"""Deploy a bundle to a board over its serial REPL, with mpremote (incremental) or ampy (full copy).

Device layout (docs/deploy.md, shared with `fieldlink image` and the OTA issue)::

    boot.py        fieldlink loader: puts the active slot first on sys.path
    main.py        fieldlink loader: imports the active slot's ``main`` module, if it has one
    fl/active      "a" or "b": the active app slot
    fl/a/, fl/b/   the two app slots; each holds one bundle (fieldlink/*.mpy, main.mpy, board.json,
                   manifest.json, ota.json/ota.sig when signed, ...)

A deploy fills the inactive slot (the staging directory) and then switches by renaming
``fl/active.new`` over ``fl/active`` — one rename, atomic on LittleFS (the ESP32 default). An
interrupted deploy therefore leaves the previous app active and bootable. All device paths are
relative to the working directory (``/`` on a board, the board directory on the virtual board).
"""

from __future__ import annotations

SLOT_ROOT = "fl"
SLOTS = ("a", "b")
ACTIVE = f"{SLOT_ROOT}/active"
ACTIVE_NEW = f"{SLOT_ROOT}/active.new"

LOADER_BOOT = b'''# fieldlink loader, written by `fieldlink deploy` / `fieldlink image` (docs/deploy.md).
# Puts the active app slot (fl/a or fl/b, named in fl/active) first on sys.path.
import sys


def _fl_slot():
    try:
        f = open("fl/active")
        s = f.read().strip()
        f.close()
    except OSError:
        return None
    if s not in ("a", "b"):
        return None
    import os
    cwd = os.getcwd().rstrip("/")
    return cwd + "/fl/" + s


_fl_dir = _fl_slot()
if _fl_dir and _fl_dir not in sys.path:
    sys.path.insert(0, _fl_dir)
del _fl_slot, _fl_dir
'''

LOADER_MAIN = b'''# fieldlink loader, written by `fieldlink deploy` / `fieldlink image` (docs/deploy.md).
# Runs the active app slot's main module (main.mpy or main.py), if it has one.
import sys


def _fl_main():
    d = sys.path[0] if sys.path else ""
    if not (d.endswith("/fl/a") or d.endswith("/fl/b")):
        return
    import os
    for n in ("main.mpy", "main.py"):
        try:
            os.stat(d + "/" + n)
        except OSError:
            continue
        __import__("main")
        return


_fl_main()
'''

LOADER_FILES: dict[str, bytes] = {"boot.py": LOADER_BOOT, "main.py": LOADER_MAIN}
