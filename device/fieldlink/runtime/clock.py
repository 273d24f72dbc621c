# The one clock of the device code: millisecond ticks, one blocking sleep and one async sleep.
#   ticks_ms/ticks_diff/ticks_add/sleep_ms   MicroPython's time functions. Where `time` has none:
#                                            CircuitPython's supervisor.ticks_ms (integer ms, wrapping at
#                                            2**29; its time.monotonic() is a float that stops resolving
#                                            milliseconds after about an hour), else CPython's monotonic
#                                            clock wrapped at 2**30, so wrap bugs show up in CPython tests
#                                            too. PERIOD is the wrap. sleep_ms blocks.
#   asleep_ms(ms)                            await asleep_ms(ms) in a task. On MicroPython it IS
#                                            asyncio.sleep_ms, whose awaitable is a preallocated singleton:
#                                            an idle loop allocates nothing per await (a wrapping
#                                            `async def` would allocate a coroutine, asyncio.sleep(ms/1000)
#                                            a float, every time).
import asyncio

try:
    from time import sleep_ms, ticks_add, ticks_diff, ticks_ms

    PERIOD = ticks_add(0, -1) + 1  # 2**30 on the ESP32 ports, larger on the 64-bit unix port
except ImportError:  # CPython, CircuitPython
    import time as _time

    try:
        from supervisor import ticks_ms

        PERIOD = 1 << 29
    except ImportError:
        PERIOD = 1 << 30

        def ticks_ms():
            return int(_time.monotonic() * 1000) & (PERIOD - 1)

    _MASK = PERIOD - 1
    _HALF = PERIOD >> 1

    def ticks_diff(a, b):
        d = (a - b) & _MASK
        return d - PERIOD if d & _HALF else d

    def ticks_add(a, d):
        return (a + d) & _MASK

    def sleep_ms(ms):
        _time.sleep(ms / 1000)


try:
    asleep_ms = asyncio.sleep_ms
except AttributeError:  # CPython (and an asyncio without sleep_ms)
    async def asleep_ms(ms):
        await asyncio.sleep(ms / 1000)
