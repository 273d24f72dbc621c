# CircuitPython `alarm` for the virtual board: time alarms, light sleep, deep sleep, sleep_memory.
#   exit_and_deep_sleep_until_alarms(TimeAlarm(...)) ends the board's process as a deep-sleep reset
#   (simboard.EXIT_DEEPSLEEP, sleep_ms = time to the alarm); the launcher restarts it, and then
#   alarm.wake_alarm is a TimeAlarm and microcontroller.cpu.reset_reason is DEEP_SLEEP_ALARM.
#   light_sleep_until_alarms(*alarms) waits for the earliest time alarm and returns it.
#   sleep_memory (4096 bytes on the ESP32-S3's RTC RAM) survives deep sleep, not a power cycle: it is the
#   same RTC memory as machine.RTC().memory() on the MicroPython side.
import time as _systime

import simboard
from simboard import sleep_ms as _sleep_ms

from alarm import time  # noqa: F401 - alarm.time, as on CircuitPython (no separate import needed)
from alarm import pin  # noqa: F401
from alarm import touch  # noqa: F401

_SLEEP_MEMORY = 4096


def _monotonic():
    try:
        return _systime.monotonic()
    except AttributeError:  # the unix port without the CircuitPython time fake
        return _systime.ticks_ms() / 1000


class SleepMemory:
    def __init__(self, _token=None):
        if _token is not _TOKEN:
            raise TypeError("cannot create 'SleepMemory' instances")

    def _data(self):
        b = simboard.board()
        raw = bytes.fromhex(b.state.get("rtc_mem", ""))
        return bytearray(raw[:_SLEEP_MEMORY] + b"\x00" * (_SLEEP_MEMORY - len(raw)))

    def _store(self, data):
        b = simboard.board()
        b.state["rtc_mem"] = bytes(data).hex()
        b.save_state()

    def __bool__(self):
        return True

    def __len__(self):
        return _SLEEP_MEMORY

    def __getitem__(self, index):
        data = self._data()
        if isinstance(index, int):
            if not -_SLEEP_MEMORY <= index < _SLEEP_MEMORY:
                raise IndexError("index out of range")
            return data[index]
        return bytearray(data[index])

    def __setitem__(self, index, value):
        data = self._data()
        if isinstance(index, int):
            if not -_SLEEP_MEMORY <= index < _SLEEP_MEMORY:
                raise IndexError("index out of range")
            if not isinstance(value, int) or not 0 <= value <= 255:
                raise ValueError("Array values should be single bytes")
            data[index] = value
        else:
            value = bytes(value)
            before = len(data)
            data[index] = value
            if len(data) != before:
                raise ValueError("Slice and value different lengths.")
        self._store(data)


_TOKEN = object()
sleep_memory = SleepMemory(_TOKEN)


def _wake_alarm():
    b = simboard.board()
    if b.reset_cause == simboard.DEEPSLEEP_RESET and b.wake_reason == simboard.TIMER_WAKE:
        return time.TimeAlarm(monotonic_time=_monotonic(), _check=False)
    return None


def __getattr__(name):
    if name == "wake_alarm":
        return _wake_alarm()
    raise AttributeError("module 'alarm' has no attribute '%s'" % name)


def _time_alarms(alarms):
    out = []
    for a in alarms:
        if isinstance(a, time.TimeAlarm):
            out.append(a)
        elif not isinstance(a, (pin.PinAlarm, touch.TouchAlarm)):
            raise TypeError("Expected an alarm")
    return out


def light_sleep_until_alarms(*alarms):
    if not alarms:
        return None
    timed = _time_alarms(alarms)
    if not timed:
        raise NotImplementedError("the virtual board wakes from light sleep on time alarms only")
    first = min(timed, key=lambda a: a.monotonic_time)
    # wake at or after the alarm time, never before it (a rounded sleep_ms can end a little early)
    left = first.monotonic_time - _monotonic()
    while left > 0:
        _sleep_ms(int(left * 1000) + 1)
        left = first.monotonic_time - _monotonic()
    return first


def exit_and_deep_sleep_until_alarms(*alarms, preserve_dios=()):
    timed = _time_alarms(alarms)
    ms = None
    wake = 0
    if timed:
        first = min(timed, key=lambda a: a.monotonic_time)
        ms = max(0, int((first.monotonic_time - _monotonic()) * 1000 + 0.5))
        wake = simboard.TIMER_WAKE
    simboard.board().end(simboard.DEEPSLEEP_RESET, sleep_ms=ms, wake=wake)
