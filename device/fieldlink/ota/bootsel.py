# Boot slot selection for the loader (boot.py at the root of the board): self-contained (no fieldlink
# import, it runs before an app slot is on sys.path), so `fieldlink deploy`/`image` can write it as the
# loader. Files, relative to the board's root:
#   fl/active    "a" | "b"   the confirmed app slot (the rollback target while a trial runs)
#   fl/trial     "SLOT N"    an app slot on trial, booted N times so far (written by the updater)
#   fl/rollback  REASON      left for fieldlink.ota.boot.on_boot when the loader rolled back
# A trial slot boots at most MAX_BOOTS times without a confirmation; a watchdog reset or a crash
# (crashed(), called by the main.py loader) during a trial rolls back at once.
import os

MAX_BOOTS = 3
WDT_RESET = 3  # machine.WDT_RESET on the ESP32 port


def _nohook(name):
    pass


hook = _nohook  # power-cut tests stop the process here before each write


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _write(path, text):
    hook("write " + path + ".tmp")
    with open(path + ".tmp", "w") as f:
        f.write(text)
    hook("rename " + path)
    try:
        os.rename(path + ".tmp", path)
    except OSError:
        os.remove(path)
        os.rename(path + ".tmp", path)


def _remove(path):
    try:
        os.stat(path)
    except OSError:
        return
    hook("remove " + path)
    os.remove(path)


def roll_back(root, reason):
    """Leave the reason for on_boot, then end the trial: the next boot runs fl/active."""
    fl = root + "/fl/"
    _write(fl + "rollback", reason)
    _remove(fl + "trial")


def select(root=".", cause=None, max_boots=MAX_BOOTS):
    """The slot to boot: the trial slot while it has boots left, else fl/active (None: no slot)."""
    fl = root + "/fl/"
    active = _read(fl + "active")
    if active not in ("a", "b"):
        active = None
    t = _read(fl + "trial")
    if t is None:
        return active
    parts = t.split()
    try:
        slot = parts[0]
        n = int(parts[1])
    except (IndexError, ValueError):
        slot, n = None, 0
    if slot not in ("a", "b"):
        roll_back(root, "bad_trial")
        return active
    if slot == active:  # confirmed, the confirmation was cut before it removed fl/trial
        return slot
    if cause == WDT_RESET:
        roll_back(root, "watchdog")
        return active
    if n >= max_boots:
        roll_back(root, "unconfirmed")
        return active
    _write(fl + "trial", "%s %d" % (slot, n + 1))
    return slot


def crashed(root="."):
    """The app raised out of its main module: a trial ends here (the caller resets the board)."""
    if _read(root + "/fl/trial") is not None:
        roll_back(root, "crash")
        return True
    return False
