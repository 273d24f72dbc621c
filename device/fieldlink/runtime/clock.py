# Millisecond ticks for device code: MicroPython's time.ticks_ms/ticks_diff/ticks_add/sleep_ms, and on
# CPython a fallback with the same wrap-around (period 2**30), so wrap bugs show up in CPython tests too.
try:
    from time import sleep_ms, ticks_add, ticks_diff, ticks_ms
except ImportError:  # CPython
    import time as _time

    _MASK = 0x3FFFFFFF

    def ticks_ms():
        return int(_time.monotonic() * 1000) & _MASK

    def ticks_diff(a, b):
        d = (a - b) & _MASK
        return d - 0x40000000 if d & 0x20000000 else d

    def ticks_add(a, d):
        return (a + d) & _MASK

    def sleep_ms(ms):
        _time.sleep(ms / 1000)
