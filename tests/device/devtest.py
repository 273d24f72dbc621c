# Tiny helpers for device tests that run under CPython (pytest) AND the MicroPython unix port.
# Device tests are plain `def test_x():` functions using `assert`; no fixtures, no pytest import.
import os
import sys

IS_MPY = sys.implementation.name == "micropython"

_counter = [0]


def raises(exc_type, fn, *args, **kwargs):
    """Call fn and return the exception it raised; fail if it raised nothing or another type."""
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return e
    raise AssertionError("expected %s" % exc_type.__name__)


def _exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def rmtree(path):
    try:
        st = os.stat(path)
    except OSError:
        return
    if st[0] & 0x4000:
        for name in os.listdir(path):
            rmtree(path + "/" + name)
        os.rmdir(path)
    else:
        os.remove(path)


class scratch:
    """`with scratch(tag) as d:` a fresh tmpdir(tag), removed on the way out (also on failure)."""

    def __init__(self, tag="t"):
        self.tag = tag

    def __enter__(self):
        self.path = tmpdir(self.tag)
        return self.path

    def __exit__(self, *exc):
        rmtree(self.path)


def tmpdir(tag="t"):
    """A fresh empty directory under $TMPDIR (or /tmp), unique per call and process."""
    base = os.getenv("TMPDIR") or "/tmp"
    try:
        pid = os.getpid()
    except AttributeError:
        pid = 0
    _counter[0] += 1
    path = "%s/fltest-%s-%d-%d-%s" % (base, "mpy" if IS_MPY else "cpy", pid, _counter[0], tag)
    rmtree(path)
    os.mkdir(path)
    return path
