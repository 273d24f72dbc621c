# machine.RTC for the virtual board (imported into `machine`): datetime() counts from 2000-01-01 at
# power-on unless set (the offset to host time is kept in sim_state.json, so it survives resets but not
# a power-on); memory() is RTC RAM (2048 bytes) that survives resets and deep sleep, not power-on.
import time

import simboard
from simboard import ticks_diff as _ticks_diff, ticks_ms as _ticks_ms



# ---- RTC -------------------------------------------------------------------------------------------
_EPOCH_2000 = 946684800
_RTC_MEM_MAX = 2048


def _host_time():
    return time.time()  # POSIX seconds on both the unix port and CPython


class RTC:
    """datetime() counts from 2000-01-01 at power-on unless set; survives resets (not power-on)."""

    def __init__(self, id=0):
        pass

    def _now(self):
        b = simboard.board()
        off = b.state.get("rtc_offset")
        if off is None:
            if b.boot_ms is None:
                b.boot_ms = _ticks_ms()
            return _EPOCH_2000 + _ticks_diff(_ticks_ms(), b.boot_ms) / 1000
        return _host_time() + off

    def datetime(self, dt=None):
        if dt is None:
            t = self._now()
            secs = int(t)
            y, mo, d, h, mi, s, wd = _gmtime(secs)
            return (y, mo, d, wd, h, mi, s, int((t - secs) * 1000000))
        if len(dt) < 7:
            raise ValueError("need (year, month, day, weekday, hours, minutes, seconds[, subseconds])")
        y, mo, d, _wd, h, mi, s = dt[:7]
        us = dt[7] if len(dt) > 7 else 0
        if not (1 <= mo <= 12 and 1 <= d <= 31 and 0 <= h < 24 and 0 <= mi < 60 and 0 <= s < 60):
            raise ValueError("invalid datetime")
        epoch = _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s + us / 1000000
        b = simboard.board()
        b.state["rtc_offset"] = epoch - _host_time()
        b.save_state()
        return None

    def init(self, dt):
        self.datetime(dt)

    def memory(self, data=None):
        b = simboard.board()
        if data is None:
            return bytes.fromhex(b.state.get("rtc_mem", ""))
        data = bytes(data)
        if len(data) > _RTC_MEM_MAX:
            raise ValueError("buffer too long")
        b.state["rtc_mem"] = data.hex()
        b.save_state()
        return None


def _days_from_civil(y, m, d):
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _gmtime(secs):
    days, rem = divmod(int(secs), 86400)
    h, rem = divmod(rem, 3600)
    mi, s = divmod(rem, 60)
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    y += m <= 2
    wd = (days + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    return y, m, d, h, mi, s, wd
