# Virtual-board `machine` module: the MicroPython ESP32 machine API on the unix port / CPython.
# Hardware state lives in simboard (the selected board); see docs/virtual-board.md.
#
# Timers and the WDT run on a background thread. Under MicroPython the thread hands Timer callbacks to
# micropython.schedule(), so they run on the main thread between bytecodes, like soft IRQs on the ESP32.
# Under CPython the thread calls them directly.
import sys

import simboard
from simboard import sleep_ms as _sleep_ms, ticks_diff as _ticks_diff, ticks_ms as _ticks_ms
from machine_bus import I2C, UART, SoftI2C  # noqa: F401 - re-exported
from machine_rtc import RTC  # noqa: F401 - re-exported

try:
    import _thread
except ImportError:  # pragma: no cover
    _thread = None

try:
    import micropython
    _schedule = micropython.schedule
except (ImportError, AttributeError):
    _schedule = None

IS_MPY = sys.implementation.name == "micropython"

PWRON_RESET = simboard.PWRON_RESET
HARD_RESET = simboard.HARD_RESET
WDT_RESET = simboard.WDT_RESET
DEEPSLEEP_RESET = simboard.DEEPSLEEP_RESET
SOFT_RESET = simboard.SOFT_RESET
PIN_WAKE = simboard.PIN_WAKE
EXT0_WAKE = simboard.EXT0_WAKE
EXT1_WAKE = simboard.EXT1_WAKE
TIMER_WAKE = simboard.TIMER_WAKE
TOUCHPAD_WAKE = simboard.TOUCHPAD_WAKE
ULP_WAKE = simboard.ULP_WAKE
SLEEP = 2
DEEPSLEEP = 4


def _pin_id(pin):
    if isinstance(pin, Pin):
        return pin.id
    if isinstance(pin, int) and not isinstance(pin, bool):
        return pin
    raise TypeError("expected a Pin or an int")


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    PULL_HOLD = 4
    IRQ_FALLING = 1
    IRQ_RISING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3
    _UNSET = object()

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        if isinstance(id, Pin):
            id = id.id
        if isinstance(id, bool) or not isinstance(id, int) or not 0 <= id <= 48:
            raise ValueError("invalid pin")
        self.id = id
        self.init(mode, pull, value=value, drive=drive, hold=hold)

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        st = simboard.board().pin(self.id)
        if mode != -1:
            if mode not in (None, Pin.IN, Pin.OUT, Pin.OPEN_DRAIN):
                raise ValueError("invalid pin mode")
            st.mode = mode
        if pull != -1:
            if pull not in (None, Pin.PULL_UP, Pin.PULL_DOWN):
                raise ValueError("invalid pull")
            st.pull = pull
        if drive is not None:
            st.drive = drive
        if value is not None:
            self._set(value)

    def _set(self, v):
        b = simboard.board()
        st = b.pin(self.id)
        old = b.level(self.id)
        st.out = 1 if v else 0
        new = b.level(self.id)
        if st.mode in (Pin.OUT, Pin.OPEN_DRAIN) and old != new:
            for w in st.watchers:
                w(self.id, new)

    def value(self, x=_UNSET):
        if x is Pin._UNSET:
            return simboard.board().level(self.id)
        self._set(x)
        return None

    def __call__(self, x=_UNSET):
        return self.value(x)

    def on(self):
        self._set(1)

    def off(self):
        self._set(0)

    def toggle(self):
        self._set(0 if simboard.board().pin(self.id).out else 1)

    def irq(self, handler=None, trigger=IRQ_FALLING | IRQ_RISING, *, wake=None, hard=False):
        """Handlers are called (with this Pin) when simboard.set_pin() changes the input level."""
        st = simboard.board().pin(self.id)
        if handler is not None and not callable(handler):
            raise TypeError("handler must be callable")
        if not isinstance(trigger, int) or trigger & ~3 or trigger == 0 and handler is not None:
            raise ValueError("bad trigger")
        st.handler = handler
        st.trigger = trigger
        st.obj = self
        return _PinIRQ(self)

    def __repr__(self):
        return "Pin(%d)" % self.id


class _PinIRQ:
    def __init__(self, pin):
        self.pin = pin

    def trigger(self):
        return simboard.board().pin(self.pin.id).trigger


class Signal:
    def __init__(self, pin, *args, invert=False, **kw):
        self.pin = pin if isinstance(pin, Pin) else Pin(pin, *args, **kw)
        self.invert = bool(invert)

    def value(self, x=Pin._UNSET):
        if x is Pin._UNSET:
            return self.pin.value() ^ self.invert
        self.pin.value((1 if x else 0) ^ self.invert)
        return None

    def __call__(self, x=Pin._UNSET):
        return self.value(x)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


# ---- ADC -------------------------------------------------------------------------------------------
_ADC_PINS = {"esp32s3": range(1, 21), "esp32c6": range(0, 7)}
# approximate full-scale input (volts) per attenuation on the ESP32-S3/C6
_ADC_FULL_SCALE = (0.95, 1.25, 1.75, 3.1)


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_12BIT = 12

    def __init__(self, pin, *, atten=None):
        pid = _pin_id(pin)
        allowed = _ADC_PINS.get(simboard.board().chip)
        if allowed is not None and pid not in allowed:
            raise ValueError("invalid Pin for ADC")
        self.pin = pid
        self._atten = ADC.ATTN_0DB
        self._width = 12
        if atten is not None:
            self.atten(atten)

    def init(self, *, atten=None):
        if atten is not None:
            self.atten(atten)

    def atten(self, atten):
        if atten not in (0, 1, 2, 3):
            raise ValueError("invalid attenuation")
        self._atten = atten

    def width(self, bits):
        if bits not in (12, 3):  # 3 is WIDTH_12BIT on older firmwares
            raise ValueError("invalid width")
        self._width = 12

    def _volts(self):
        src = simboard.board().adc.get(self.pin)
        if src is None:
            return 0.0
        v = float(src())
        fs = _ADC_FULL_SCALE[self._atten]
        if v < 0:
            v = 0.0
        if v > fs:
            v = fs
        return v

    def _raw(self):
        return int(self._volts() / _ADC_FULL_SCALE[self._atten] * 4095 + 0.5)

    def read(self):
        return self._raw()

    def read_u16(self):
        raw = self._raw()
        return (raw << 4) | (raw >> 8)

    def read_uv(self):
        return int(self._volts() * 1000000)


# ---- Timer / WDT: one ticker thread per process ------------------------------------------------------
_ticker = {"running": False, "items": []}
_TICK_MS = 2


def _ticker_loop():
    items = _ticker["items"]
    while _ticker["running"]:
        _sleep_ms(_TICK_MS)
        now = _ticks_ms()
        for it in list(items):
            it._tick(now)


def _ticker_add(item):
    items = _ticker["items"]
    if item not in items:
        items.append(item)
    if not _ticker["running"]:
        _ticker["running"] = True
        if _thread is None:
            raise OSError("no thread support for Timer/WDT")
        if not IS_MPY:
            import threading
            threading.Thread(target=_ticker_loop, daemon=True, name="sim-ticker").start()
        else:
            _thread.start_new_thread(_ticker_loop, ())


def _ticker_remove(item):
    items = _ticker["items"]
    if item in items:
        items.remove(item)


class Timer:
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id, *args, **kwargs):
        if not isinstance(id, int) or not -1 <= id <= 3:
            raise ValueError("invalid Timer number")
        self.id = id
        self._cb = None
        self._period = 0
        self._mode = Timer.PERIODIC
        self._due = None
        self._pending = False
        if args or kwargs:
            self.init(*args, **kwargs)

    def init(self, *, mode=PERIODIC, period=-1, callback=None, freq=-1, tick_hz=1000):
        if mode not in (Timer.ONE_SHOT, Timer.PERIODIC):
            raise ValueError("invalid mode")
        if freq is not None and freq != -1:
            if freq <= 0:
                raise ValueError("freq must be > 0")
            period_ms = 1000.0 / freq
        elif period is not None and period >= 0:
            period_ms = period * 1000.0 / tick_hz
        else:
            raise ValueError("need period or freq")
        if callback is not None and not callable(callback):
            raise TypeError("callback must be callable")
        self.deinit()
        self._mode = mode
        self._period = max(1, int(period_ms + 0.5))
        self._cb = callback
        self._due = _ticks_ms() + self._period
        self._board = simboard.board()
        self._board.timers.append(self)
        _ticker_add(self)

    def deinit(self):
        self._due = None
        _ticker_remove(self)
        b = getattr(self, "_board", None)
        if b is not None and self in b.timers:
            b.timers.remove(self)

    def value(self):
        if self._due is None:
            return 0
        return max(0, _ticks_diff(self._due, _ticks_ms()))

    def _tick(self, now):
        if self._due is None or _ticks_diff(now, self._due) < 0:
            return
        if self._mode == Timer.PERIODIC:
            self._due += self._period
            if _ticks_diff(now, self._due) > self._period:  # fell behind: skip, like a busy soft IRQ
                self._due = now + self._period
        else:
            self.deinit()
        cb = self._cb
        if cb is None:
            return
        if _schedule is not None and IS_MPY:
            if self._pending:
                return
            self._pending = True
            try:
                _schedule(self._run, None)
            except RuntimeError:  # schedule queue full: the callback is dropped, as on hardware
                self._pending = False
        else:
            self._run(None)

    def _run(self, _):
        self._pending = False
        cb = self._cb
        if cb is not None:
            cb(self)


class _WdtCore:
    def __init__(self, board, timeout):
        self.board = board
        self.timeout = timeout
        self.last = _ticks_ms()

    def _stop(self):
        _ticker_remove(self)

    def _tick(self, now):
        if _ticks_diff(now, self.last) > self.timeout:
            _ticker_remove(self)
            print("WDT: task watchdog timeout, resetting")
            self.board.end(WDT_RESET, from_thread=True)


class WDT:
    """A missed feed() ends the process as a WDT reset (exit code simboard.EXIT_WDT_RESET; under
    MicroPython the process is SIGKILLed because a thread cannot exit it -- sim_state.json says why).
    Like the ESP32 task WDT it cannot be stopped; creating it again changes the timeout."""

    def __init__(self, id=0, timeout=5000):
        if id != 0:
            raise ValueError("WDT id must be 0")
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise ValueError("timeout must be >= 1 ms")
        b = simboard.board()
        if b.wdt is None:
            b.wdt = _WdtCore(b, timeout)
        b.wdt.timeout = timeout
        b.wdt.last = _ticks_ms()
        self._core = b.wdt
        _ticker_add(b.wdt)

    def feed(self):
        self._core.last = _ticks_ms()


# ---- module functions ------------------------------------------------------------------------------
def reset():
    simboard.board().end(HARD_RESET)


def soft_reset():
    simboard.board().end(SOFT_RESET)


def reset_cause():
    return simboard.board().reset_cause


def wake_reason():
    return simboard.board().wake_reason


def deepsleep(time_ms=None):
    """Ends the process; the launcher restarts it after time_ms (never by itself if None)."""
    if time_ms is not None and time_ms < 0:
        raise ValueError("time_ms must be >= 0")
    simboard.board().end(DEEPSLEEP_RESET, sleep_ms=time_ms, wake=TIMER_WAKE if time_ms is not None else 0)


def lightsleep(time_ms=None):
    b = simboard.board()
    if time_ms is not None:
        _sleep_ms(int(time_ms))
        b.wake_reason = TIMER_WAKE
        return
    start = b.pin_events
    while b.pin_events == start:
        _sleep_ms(5)
    b.wake_reason = PIN_WAKE


def unique_id():
    return bytes(simboard.board().mac)


_FREQS = (20000000, 40000000, 80000000, 160000000, 240000000)


def freq(hz=None, *args):
    b = simboard.board()
    if hz is None:
        return b.freq
    if hz not in _FREQS:
        raise ValueError("frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz")
    if b.chip == "esp32c6" and hz > 160000000:
        raise ValueError("frequency must be 20MHz, 40MHz, 80Mhz or 160MHz")
    b.freq = hz
    return None


def idle():
    _sleep_ms(0)


_irq_state = [1]


def disable_irq():
    s = _irq_state[0]
    _irq_state[0] = 0
    return s


def enable_irq(state=1):
    _irq_state[0] = state


def time_pulse_us(pin, pulse_level, timeout_us=1000000):
    """Returns a pulse width queued with simboard.queue_pulse(pin, us); otherwise waits for the pin to
    reach pulse_level (driven by simboard.set_pin) and returns -2 if it does not within timeout_us,
    -1 if it stays there for the whole timeout."""
    pid = _pin_id(pin)
    b = simboard.board()
    st = b.pin(pid)
    if st.pulses:
        w = st.pulses.pop(0)
        return w if w <= timeout_us else -1
    deadline = _ticks_ms() + max(1, timeout_us // 1000)
    while b.level(pid) != pulse_level:
        if _ticks_diff(deadline, _ticks_ms()) <= 0:
            return -2
        _sleep_ms(1)
    start = _ticks_ms()
    while b.level(pid) == pulse_level:
        if _ticks_diff(_ticks_ms(), start) * 1000 >= timeout_us:
            return -1
        _sleep_ms(1)
    return _ticks_diff(_ticks_ms(), start) * 1000


def bootloader(*args):
    raise OSError("bootloader() is not available on the virtual board")
