# CircuitPython `watchdog` for the virtual board: WatchDogMode, WatchDogTimeout and the WatchDogTimer
# that microcontroller.watchdog is. timeout is in seconds; mode RESET ends the board's process as a
# watchdog reset when feed() comes late (checked on every feed() and by check(): there is no timer
# thread), mode RAISE raises WatchDogTimeout in the caller of feed()/check().
import simboard
from simboard import ticks_diff as _ticks_diff, ticks_ms as _ticks_ms


class WatchDogMode:
    def __repr__(self):
        return "watchdog.WatchDogMode." + getattr(self, "_name", "?")


for _n in ("RAISE", "RESET"):
    _v = WatchDogMode()
    _v._name = _n
    setattr(WatchDogMode, _n, _v)


class WatchDogTimeout(Exception):
    pass


_TOKEN = object()


class WatchDogTimer:
    def __init__(self, _token=None):
        if _token is not _TOKEN:
            raise TypeError("cannot create 'WatchDogTimer' instances")
        self.timeout = 0.0
        self._mode = None
        self._last = _ticks_ms()

    @property
    def mode(self):
        return self._mode

    @mode.setter
    def mode(self, m):
        if m is not None and not isinstance(m, WatchDogMode):
            raise TypeError("mode must be a WatchDogMode")
        if self.timeout <= 0:
            raise ValueError("watchdog timeout must be greater than 0")
        if self._mode is WatchDogMode.RESET and m is not WatchDogMode.RESET:
            raise RuntimeError("WatchDogTimer cannot be deinitialized once mode is set to RESET")
        self._mode = m
        self._last = _ticks_ms()

    def feed(self):
        if self._mode is None:
            raise ValueError("WatchDogTimer is not currently running")
        self.check()
        self._last = _ticks_ms()

    def check(self):
        """Sim helper: what the hardware does if the timeout has passed since the last feed."""
        if self._mode is None or _ticks_diff(_ticks_ms(), self._last) <= int(self.timeout * 1000):
            return
        if self._mode is WatchDogMode.RESET:
            simboard.board().end(simboard.WDT_RESET)
        self._last = _ticks_ms()
        raise WatchDogTimeout()

    def deinit(self):
        if self._mode is WatchDogMode.RESET:
            raise RuntimeError("WatchDogTimer cannot be deinitialized once mode is set to RESET")
        self._mode = None
