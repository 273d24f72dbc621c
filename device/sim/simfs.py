# The virtual board's storage, split in two on purpose:
#
# * the sim's own files (BOARD_DIR/flash/<label>.bin, nvs.json, sim_state.json, scenario files) are
#   host files, reached only through the functions below (hopen, hstat, ...). Under MicroPython they go
#   through a private, *unmounted* VfsPosix, so they keep working after the board's own filesystem has
#   replaced the host's at "/" -- and device code cannot reach them through open()/os/vfs.
# * the board's "/" is the LittleFS2 filesystem in its `vfs` partition (flash/vfs.bin), mounted by
#   simboot.boot_fs() the way the ESP32 port's frozen _boot.py does it.
#
# Under CPython (device tests) these are the plain builtins: nothing is remounted there.
import os
import sys

IS_MPY = sys.implementation.name == "micropython"

if IS_MPY:
    import vfs as _vfs

    _HOST = _vfs.VfsPosix()  # never mounted: absolute paths, or relative to the process's working dir

    def hopen(path, mode="r"):
        return _HOST.open(path, mode)

    def hstat(path):
        return _HOST.stat(path)

    def hmkdir(path):
        _HOST.mkdir(path)

    def hrename(old, new):
        _HOST.rename(old, new)

    def hremove(path):
        _HOST.remove(path)

    def hlistdir(path):
        return [e[0] for e in _HOST.ilistdir(path)]

    def hgetcwd():
        return _HOST.getcwd()
else:
    def hopen(path, mode="r"):
        return open(path, mode)

    def hstat(path):
        return os.stat(path)

    def hmkdir(path):
        os.mkdir(path)

    def hrename(old, new):
        os.rename(old, new)

    def hremove(path):
        os.remove(path)

    def hlistdir(path):
        return os.listdir(path)

    def hgetcwd():
        return os.getcwd()

# The process's own environment and pid, captured before anything is remounted (device code's `os`
# becomes the board's, see simboot.install_guards).
_getenv = os.getenv
_system = getattr(os, "system", None)


def getenv(name):
    return _getenv(name)


def hexists(path):
    try:
        hstat(path)
        return True
    except OSError:
        return False


def habspath(path):
    """`path` made absolute against the process's working directory (host side)."""
    if path.startswith("/"):
        return path
    cwd = hgetcwd().rstrip("/")
    if path in ("", "."):
        return cwd or "/"
    if path.startswith("./"):
        path = path[2:]
    return cwd + "/" + path


def pid():
    try:
        with hopen("/proc/self/stat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError):
        return None


def kill_self(sig=9):
    """End the whole process from any thread (MicroPython has no os._exit())."""
    p = pid()
    if p is not None and _system is not None:
        _system("kill -%d %d" % (sig, p))


_deferred = [False]


def defer_interrupt(delay_ms=30):
    """Re-deliver a Ctrl-C (SIGINT) to this process `delay_ms` from now, from another thread; used where
    a KeyboardInterrupt must not escape (the flash block device, see esp32.Partition)."""
    if not IS_MPY:
        raise KeyboardInterrupt
    if _deferred[0]:
        return
    _deferred[0] = True
    import _thread
    import time

    def later():
        time.sleep_ms(delay_ms)
        _deferred[0] = False
        kill_self(2)

    _thread.start_new_thread(later, ())
