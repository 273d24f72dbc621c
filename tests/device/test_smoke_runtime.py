# The device test harness itself: the same module runs under CPython and MicroPython.
import sys

from devtest import IS_MPY, raises, tmpdir


def test_runtime_detected():
    assert IS_MPY == (sys.implementation.name == "micropython")


def test_raises_helper_catches_and_reports():
    e = raises(ValueError, int, "x")
    assert isinstance(e, ValueError)
    failed = False
    try:
        raises(ValueError, int, "3")
    except AssertionError:
        failed = True
    assert failed


def test_tmpdir_is_fresh_and_writable():
    d = tmpdir("smoke")
    with open(d + "/f", "w") as f:
        f.write("x")
    with open(d + "/f") as f:
        assert f.read() == "x"
