# The one clock of the device code: millisecond ticks, one blocking sleep and one async sleep.
#   ticks_ms/ticks_diff/ticks_add/sleep_ms   MicroPython's time functions; on CPython a fallback with
#                                            the same wrap-around (period 2**30), so wrap bugs show up
#                                            in CPython tests too. sleep_ms blocks.
#   asleep_ms(ms)                            await asleep_ms(ms) in a task. On MicroPython it IS
#                                            asyncio.sleep_ms, whose awaitable is a preallocated singleton:
#                                            an idle loop allocates nothing per await (a wrapping
#                                            `async def` would allocate a coroutine, asyncio.sleep(ms/1000)
#                                            a float, every time).
import asyncio

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


try:
    asleep_ms = asyncio.sleep_ms
except AttributeError:  # CPython
    async def asleep_ms(ms):
        await asyncio.sleep(ms / 1000)
