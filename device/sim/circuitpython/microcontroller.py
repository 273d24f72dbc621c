# CircuitPython `microcontroller` for the virtual board: Pin objects (microcontroller.pin.GPIOn), cpu
# (frequency, reset_reason, temperature, uid), nvm (nvm.ByteArray), reset(), watchdog, delay_us.
# Pins are claimed by the peripheral that uses them (busio, digitalio, analogio) and released by its
# deinit(); using a claimed pin raises ValueError("<pin> in use") as CircuitPython does.
import simboard
from simboard import sleep_ms as _sleep_ms, ticks_diff as _ticks_diff, ticks_ms as _ticks_ms

MAX_GPIO = 48


class Pin:
    """A GPIO of the ESP32-S3/C6. Only this module creates them (CircuitPython: no constructor)."""

    def __init__(self, number, _token=None):
        if _token is not _TOKEN:
            raise TypeError("cannot create 'Pin' instances")
        self._number = number

    @property
    def number(self):  # not in CircuitPython's API: the sim's view (GPIO number)
        return self._number

    def __hash__(self):
        return self._number

    def __eq__(self, other):
        return isinstance(other, Pin) and other._number == self._number

    def __repr__(self):
        return "microcontroller.pin.GPIO%d" % self._number


_TOKEN = object()


class _PinModule:
    """microcontroller.pin: GPIO0 .. GPIO48."""

    def __init__(self):
        for n in range(MAX_GPIO + 1):
            setattr(self, "GPIO%d" % n, Pin(n, _TOKEN))


pin = _PinModule()


def gpio(n):
    """The Pin object of GPIO n (sim helper)."""
    return getattr(pin, "GPIO%d" % n)


# ---- pin claims (per board) ------------------------------------------------------------------------
def _claims():
    b = simboard.board()
    c = getattr(b, "cpy_claims", None)
    if c is None:
        c = b.cpy_claims = {}
    return c


def claim(p, owner):
    """Mark pin p used by owner; ValueError if another owner holds it."""
    if not isinstance(p, Pin):
        raise TypeError("expected a Pin, got %s" % type(p).__name__)
    c = _claims()
    if p._number in c and c[p._number] is not owner:
        raise ValueError("%s in use" % _pin_name(p))
    c[p._number] = owner


def release(p, owner):
    c = _claims()
    if p is not None and c.get(p._number) is owner:
        del c[p._number]


_DEINIT_MSG = "Object has been deinitialized and can no longer be used. Create a new object."


class _Peripheral:
    """What every pin-owning CircuitPython object shares: it claims its pins all or none, deinit() frees
    them once (then _free() for the rest of the subclass's resources), a deinited object raises
    ValueError, and `with` deinits on exit."""

    _deinited = False
    _pins = ()

    def _claim(self, *pins):
        pins = [p for p in pins if p is not None]
        for i, p in enumerate(pins):
            try:
                claim(p, self)
            except ValueError:
                for q in pins[:i]:
                    release(q, self)
                raise
        self._pins = pins

    def _free(self):
        pass

    def deinit(self):
        if not self._deinited:
            for p in self._pins:
                release(p, self)
            self._free()
            self._deinited = True

    def deinited(self):
        return self._deinited

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.deinit()

    def _check(self):
        if self._deinited:
            raise ValueError(_DEINIT_MSG)


def _pin_name(p):
    try:
        import board
        for k in board._names():
            if getattr(board, k) is p:
                return k
    except ImportError:
        pass
    return "GPIO%d" % p._number


# ---- reset reason ----------------------------------------------------------------------------------
class ResetReason:
    POWER_ON = "POWER_ON"
    BROWNOUT = "BROWNOUT"
    SOFTWARE = "SOFTWARE"
    DEEP_SLEEP_ALARM = "DEEP_SLEEP_ALARM"
    RESET_PIN = "RESET_PIN"
    WATCHDOG = "WATCHDOG"
    UNKNOWN = "UNKNOWN"
    RESCUE_DEBUG = "RESCUE_DEBUG"


class RunMode:
    def __repr__(self):
        return "microcontroller.RunMode." + getattr(self, "_name", "?")


def _enum(cls, names):  # CircuitPython enum values are instances of their class
    for n in names:
        v = cls()
        v._name = n
        setattr(cls, n, v)


_enum(RunMode, ("NORMAL", "SAFE_MODE", "UF2", "BOOTLOADER"))


# simboard reset causes (MicroPython numbering) -> CircuitPython's ResetReason. machine.reset() and
# microcontroller.reset() are both esp_restart() (ESP_RST_SW -> SOFTWARE).
_REASONS = {simboard.PWRON_RESET: ResetReason.POWER_ON, simboard.HARD_RESET: ResetReason.SOFTWARE,
            simboard.SOFT_RESET: ResetReason.SOFTWARE, simboard.WDT_RESET: ResetReason.WATCHDOG,
            simboard.DEEPSLEEP_RESET: ResetReason.DEEP_SLEEP_ALARM}


class Processor:
    @property
    def frequency(self):
        return simboard.board().freq

    @property
    def reset_reason(self):
        return _REASONS.get(simboard.board().reset_cause, ResetReason.UNKNOWN)

    @property
    def temperature(self):
        return 35.0  # the ESP32-S3's internal sensor, roughly, at idle

    @property
    def uid(self):
        return bytearray(simboard.board().mac)

    @property
    def voltage(self):
        return None  # not available on Espressif chips


cpu = Processor()
cpus = cpu


def reset():
    """Reset the microcontroller (no return): the sim process ends with a reset, like machine.reset()."""
    simboard.board().end(simboard.HARD_RESET)


def on_next_reset(run_mode):
    if not isinstance(run_mode, RunMode):
        raise ValueError("Invalid run mode")
    simboard.board().state["cpy_next_run_mode"] = run_mode._name


def delay_us(delay):
    end = _ticks_ms() + (int(delay) + 999) // 1000
    while _ticks_diff(end, _ticks_ms()) > 0:
        pass


_irq = [True]


def disable_interrupts():
    _irq[0] = False


def enable_interrupts():
    _irq[0] = True


# ---- watchdog: microcontroller.watchdog is a watchdog.WatchDogTimer ---------------------------------
import watchdog as _watchdog  # noqa: E402

watchdog = _watchdog.WatchDogTimer(_token=_watchdog._TOKEN)

import nvm as _nvm  # noqa: E402

nvm = _nvm.ByteArray(_token=_nvm._TOKEN)


def _sleep(ms):  # shared by the fakes
    _sleep_ms(ms)
