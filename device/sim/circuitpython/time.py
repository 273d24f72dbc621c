# CircuitPython's `time` API for the MicroPython unix port (the virtual board): monotonic(),
# monotonic_ns(), sleep(), time(), localtime(), mktime(), struct_time. Loaded instead of the built-in
# `time` because MicroPython lets a file on the path extend it; under CPython the built-in wins and
# already has these. MicroPython's ticks_ms/ticks_diff/ticks_add/sleep_ms stay available because the
# unix port's own asyncio needs them; CircuitPython code must not use them (use supervisor.ticks_ms()).
from utime import *  # noqa: F401,F403
import utime as _u


def monotonic_ns():
    return _u.ticks_ms() * 1000000  # monotonic for the life of a test process (wraps after ~12 days)


def monotonic():
    return _u.ticks_ms() / 1000


class struct_time(tuple):
    pass
