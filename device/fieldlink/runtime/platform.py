# What the code runs on: the unix port (virtual board, tests) or a board; the status console; the
# machine module when there is one.
import sys


def unix():
    """True on the MicroPython unix port and CPython (the virtual board), False on a board."""
    return sys.platform in ("linux", "darwin")


def say(msg):
    """Human-readable status: stderr on the unix port (stdout may be the uplink), console elsewhere."""
    try:
        if unix():
            sys.stderr.write("fieldlink: %s\n" % msg)
        else:
            print("fieldlink: %s" % msg)
    except Exception:
        pass


def machine():
    """The machine module, or None where there is none (CPython without the virtual board)."""
    try:
        import machine as m
        return m
    except ImportError:
        return None
