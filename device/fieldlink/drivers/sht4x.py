# Sensirion SHT40/SHT41/SHT45 temperature + humidity sensor (I2C, address 0x44; SHT40-B: 0x45).
# Datasheet: "SHT4x Datasheet" v6.x, section 4 (commands), 4.4 (CRC-8), 4.6 (conversion).
# Measurement: write one command byte, wait, read 6 bytes: T_msb T_lsb CRC RH_msb RH_lsb CRC.
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from fieldlink.drivers.base import CRCError, sleep_ms

_MEASURE_HIGH = const(0xFD)     # high repeatability, max 8.3 ms
_MEASURE_MEDIUM = const(0xF6)   # medium repeatability, max 4.5 ms
_MEASURE_LOW = const(0xE0)      # low repeatability, max 1.6 ms
_READ_SERIAL = const(0x89)
_SOFT_RESET = const(0x94)

ADDRESS = const(0x44)
# mode name -> (command, wait ms rounded up from the datasheet maximum)
MODES = {"high": (_MEASURE_HIGH, 9), "medium": (_MEASURE_MEDIUM, 5), "low": (_MEASURE_LOW, 2)}


def crc8(data, start=0, end=None):
    """CRC-8 of the SHT4x: polynomial 0x31, init 0xFF, no reflection, no final XOR (0xBEEF -> 0x92)."""
    if end is None:
        end = len(data)
    crc = 0xFF
    for i in range(start, end):
        crc ^= data[i]
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


class SHT4x:
    QUANTITIES = ("temperature", "relative_humidity")

    def __init__(self, i2c, address=ADDRESS, mode="high"):
        self.i2c = i2c
        self.address = address
        self._buf = bytearray(6)
        self._cmd = bytearray(1)
        self.mode = mode

    @property
    def mode(self):
        return self._mode

    @mode.setter
    def mode(self, mode):
        if mode not in MODES:
            raise ValueError("mode must be high, medium or low")
        self._mode = mode
        self._cmd[0], self._wait = MODES[mode]

    def _check(self, buf):
        if crc8(buf, 0, 2) != buf[2] or crc8(buf, 3, 5) != buf[5]:
            raise CRCError("sht4x crc")

    def start(self):
        """Send the measurement command; returns the milliseconds to wait before collect()."""
        self.i2c.writeto(self.address, self._cmd)
        return self._wait

    def collect(self):
        """Read the 6-byte result: returns (temperature degC, relative_humidity %)."""
        buf = self._buf
        self.i2c.readfrom_into(self.address, buf)
        self._check(buf)
        st = (buf[0] << 8) | buf[1]
        srh = (buf[3] << 8) | buf[4]
        t = -45.0 + 175.0 * st / 65535.0
        rh = -6.0 + 125.0 * srh / 65535.0
        # datasheet 4.6: crop RH to 0..100 %
        rh = 0.0 if rh < 0.0 else (100.0 if rh > 100.0 else rh)
        return t, rh

    @property
    def measurements(self):
        """One blocking measurement: (temperature, relative_humidity)."""
        sleep_ms(self.start())
        return self.collect()

    @property
    def temperature(self):
        return self.measurements[0]

    @property
    def relative_humidity(self):
        return self.measurements[1]

    @property
    def serial_number(self):
        self._cmd2(_READ_SERIAL)
        sleep_ms(1)
        buf = self._buf
        self.i2c.readfrom_into(self.address, buf)
        self._check(buf)
        return (buf[0] << 24) | (buf[1] << 16) | (buf[3] << 8) | buf[4]

    def reset(self):
        self._cmd2(_SOFT_RESET)
        sleep_ms(1)

    def _cmd2(self, cmd):
        self.i2c.writeto(self.address, bytes((cmd,)))
