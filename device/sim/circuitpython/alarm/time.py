# alarm.time.TimeAlarm: wake when time.monotonic() reaches monotonic_time (or time.time() reaches
# epoch_time). An alarm in the past raises ValueError, as on CircuitPython.
import time as _systime


def _monotonic():
    try:
        return _systime.monotonic()
    except AttributeError:
        return _systime.ticks_ms() / 1000


class TimeAlarm:
    def __init__(self, *, monotonic_time=None, epoch_time=None, _check=True):
        if (monotonic_time is None) == (epoch_time is None):
            raise ValueError("Only one of monotonic_time or epoch_time can be given")
        if epoch_time is not None:
            monotonic_time = _monotonic() + (epoch_time - _systime.time())
        if _check and monotonic_time < _monotonic():
            raise ValueError("Time is in the past.")
        self.monotonic_time = float(monotonic_time)

    def __repr__(self):
        return "TimeAlarm(monotonic_time=%.3f)" % self.monotonic_time
