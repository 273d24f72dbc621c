# CircuitPython `digitalio` for the virtual board: DigitalInOut on simboard's pin states, so tests see the
# levels with simboard.pin_level(gpio) and drive inputs with simboard.set_pin(gpio, v). A new DigitalInOut
# is an input without pull, as in CircuitPython; switch_to_output(value=...) sets the level in the same
# step (no glitch), which is what relays need at boot.
import microcontroller
import simboard

_IN = 0  # simboard PinState modes (MicroPython machine.Pin numbering)
_OUT = 1
_OPEN_DRAIN = 2
_PULL_UP = 1
_PULL_DOWN = 2


class Direction:
    def __repr__(self):
        return "digitalio.Direction." + getattr(self, "_name", "?")


class Pull:
    def __repr__(self):
        return "digitalio.Pull." + getattr(self, "_name", "?")


class DriveMode:
    def __repr__(self):
        return "digitalio.DriveMode." + getattr(self, "_name", "?")


def _enum(cls, names):  # CircuitPython enum values are instances of their class
    for n in names:
        v = cls()
        v._name = n
        setattr(cls, n, v)


_enum(Direction, ("INPUT", "OUTPUT"))
_enum(Pull, ("UP", "DOWN"))
_enum(DriveMode, ("PUSH_PULL", "OPEN_DRAIN"))


class DigitalInOut(microcontroller._Peripheral):
    def __init__(self, pin):
        self._claim(pin)
        self._pin = pin
        self._n = pin.number
        st = simboard.board().pin(self._n)
        st.mode = _IN
        st.pull = None

    def _st(self):
        self._check()
        return simboard.board().pin(self._n)

    def _free(self):
        st = simboard.board().pin(self._n)
        st.mode = _IN  # common_hal_reset_pin: input, no pull
        st.pull = None

    def _set_level(self, v):
        b = simboard.board()
        st = b.pin(self._n)
        old = b.level(self._n)
        st.out = 1 if v else 0
        new = b.level(self._n)
        if old != new:
            for w in st.watchers:
                w(self._n, new)

    def switch_to_output(self, value=False, drive_mode=DriveMode.PUSH_PULL):
        st = self._st()
        b = simboard.board()
        old = b.level(self._n)
        st.out = 1 if value else 0
        st.mode = _OPEN_DRAIN if drive_mode is DriveMode.OPEN_DRAIN else _OUT
        st.pull = None
        new = b.level(self._n)
        if old != new:
            for w in st.watchers:
                w(self._n, new)

    def switch_to_input(self, pull=None):
        st = self._st()
        st.mode = _IN
        st.pull = _PULL_UP if pull is Pull.UP else _PULL_DOWN if pull is Pull.DOWN else None

    @property
    def direction(self):
        return Direction.INPUT if self._st().mode == _IN else Direction.OUTPUT

    @direction.setter
    def direction(self, d):
        if d is Direction.OUTPUT:
            self.switch_to_output()
        elif d is Direction.INPUT:
            self.switch_to_input()
        else:
            raise ValueError("Invalid direction.")

    @property
    def value(self):
        self._st()
        return bool(simboard.board().level(self._n))

    @value.setter
    def value(self, v):
        st = self._st()
        if st.mode == _IN:
            raise AttributeError("Cannot set value when direction is input.")
        self._set_level(v)

    @property
    def pull(self):
        st = self._st()
        if st.mode != _IN:
            raise AttributeError("Pull not used when direction is output.")
        return Pull.UP if st.pull == _PULL_UP else Pull.DOWN if st.pull == _PULL_DOWN else None

    @pull.setter
    def pull(self, p):
        st = self._st()
        if st.mode != _IN:
            raise AttributeError("Pull not used when direction is output.")
        st.pull = _PULL_UP if p is Pull.UP else _PULL_DOWN if p is Pull.DOWN else None

    @property
    def drive_mode(self):
        st = self._st()
        if st.mode == _IN:
            raise AttributeError("Drive mode not used when direction is input.")
        return DriveMode.OPEN_DRAIN if st.mode == _OPEN_DRAIN else DriveMode.PUSH_PULL

    @drive_mode.setter
    def drive_mode(self, m):
        st = self._st()
        if st.mode == _IN:
            raise AttributeError("Drive mode not used when direction is input.")
        st.mode = _OPEN_DRAIN if m is DriveMode.OPEN_DRAIN else _OUT
