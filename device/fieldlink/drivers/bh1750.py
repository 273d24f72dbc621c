# ROHM BH1750FVI ambient light sensor (I2C, address 0x23 with ADDR low, 0x5C with ADDR high).
# Datasheet: BH1750FVI rev. D: instruction set p.5, measurement sequence p.7, MTreg p.11.
# Every instruction is one byte; a result is two bytes big-endian; lux = count / 1.2 * (69 / MTreg)
# (and / 2 in the "high2" 0.5 lx resolution mode).
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from fieldlink.drivers.base import sleep_ms

_POWER_DOWN = const(0x00)
_POWER_ON = const(0x01)
_RESET = const(0x07)
_CONT_HIGH = const(0x10)
_CONT_HIGH2 = const(0x11)
_CONT_LOW = const(0x13)
_ONCE_HIGH = const(0x20)
_ONCE_HIGH2 = const(0x21)
_ONCE_LOW = const(0x23)
_MT_HIGH_BITS = const(0x40)  # 01000_MT[7:5]
_MT_LOW_BITS = const(0x60)   # 011_MT[4:0]

ADDRESS = const(0x23)
MTREG_DEFAULT = const(69)
MTREG_MIN = const(31)
MTREG_MAX = const(254)
# mode -> (one-time opcode, continuous opcode, max measurement time in ms at MTreg 69, divisor)
MODES = {"high": (_ONCE_HIGH, _CONT_HIGH, 180, 1.2), "high2": (_ONCE_HIGH2, _CONT_HIGH2, 180, 2.4),
         "low": (_ONCE_LOW, _CONT_LOW, 24, 1.2)}


class BH1750:
    QUANTITIES = ("lux",)

    def __init__(self, i2c, address=ADDRESS, mode="high", mtreg=MTREG_DEFAULT, continuous=False):
        if mode not in MODES:
            raise ValueError("mode must be high, high2 or low")
        self.i2c = i2c
        self.address = address
        self.mode = mode
        self.continuous = continuous
        self._buf = bytearray(2)
        self._cmd = bytearray(1)
        self._mtreg = MTREG_DEFAULT
        self._started = False
        self._send(_POWER_ON)
        if mtreg != MTREG_DEFAULT:
            self.mtreg = mtreg

    def _send(self, opcode):
        self._cmd[0] = opcode
        self.i2c.writeto(self.address, self._cmd)

    @property
    def mtreg(self):
        return self._mtreg

    @mtreg.setter
    def mtreg(self, value):
        """Measurement time register 31..254 (default 69): sensitivity scales with MTreg / 69."""
        if not MTREG_MIN <= value <= MTREG_MAX:
            raise ValueError("mtreg must be 31..254")
        self._send(_MT_HIGH_BITS | (value >> 5))
        self._send(_MT_LOW_BITS | (value & 0x1F))
        self._mtreg = value
        self._started = False

    def wait_ms(self):
        return (MODES[self.mode][2] * self._mtreg + MTREG_DEFAULT - 1) // MTREG_DEFAULT

    def start(self):
        """One-time mode: send the measurement opcode each time. Continuous: only the first time."""
        m = MODES[self.mode]
        if self.continuous:
            if self._started:
                return 0
            self._send(m[1])
            self._started = True
            return self.wait_ms()
        self._send(m[0])
        return self.wait_ms()

    def collect(self):
        buf = self._buf
        self.i2c.readfrom_into(self.address, buf)
        return (((buf[0] << 8) | buf[1]) / MODES[self.mode][3] * MTREG_DEFAULT / self._mtreg,)

    @property
    def lux(self):
        sleep_ms(self.start())
        return self.collect()[0]

    def power_down(self):
        self._send(_POWER_DOWN)
        self._started = False

    def reset(self):
        """Clears the data register (only valid while powered on)."""
        self._send(_POWER_ON)
        self._send(_RESET)
