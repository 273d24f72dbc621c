# Fake I2C chips for the virtual board: SHT4x (0x44), BH1750 (0x23/0x5C), BME280 (0x76/0x77, in
# simchip_bme280.py, re-exported here). Attach with simboard.attach_i2c(bus, addr, chip).
#
# Chip protocol (machine_bus.py): i2c_write(data) for a write transaction, i2c_read(n) -> bytes for a
# read transaction. Raising OSError(19) from either = NACK (the ESP32 port's ENODEV).
#
# Measured values are attributes that hold a number or a callable returning one (scenario sources):
#   sht = SHT4x(temperature=21.5, humidity=scenario.DayNight(55, 10)); sht.temperature = 30.0
# Failure injection: chip.fail("nack") (chip disappears from the bus), chip.fail("crc") (SHT4x: wrong
# CRC bytes), chip.fail(None) (healthy again). timing=False makes measurements ready immediately.
import time

ENODEV = 19


def _ms():
    try:
        return time.ticks_ms()
    except AttributeError:
        return int(time.monotonic() * 1000)


def _elapsed(t0):
    try:
        return time.ticks_diff(time.ticks_ms(), t0)
    except AttributeError:
        return int(time.monotonic() * 1000) - t0


def crc8(data, poly=0x31, init=0xFF):
    """Sensirion CRC-8: polynomial 0x31, init 0xFF, no reflection, no final xor."""
    crc = init
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def value(v):
    """Resolve a chip attribute: a number, or a callable source returning one."""
    return float(v() if callable(v) else v)


class FakeChip:
    def __init__(self, timing=True):
        self.nack = False
        self.bad_crc = False
        self.timing = timing
        self.writes = []  # every write transaction, for tests

    def fail(self, mode=None):
        if mode not in (None, "nack", "crc"):
            raise ValueError("fail mode must be None, 'nack' or 'crc'")
        self.nack = mode == "nack"
        self.bad_crc = mode == "crc"

    def _nack(self):
        raise OSError(ENODEV)

    def i2c_write(self, data):
        if self.nack:
            self._nack()
        self.writes.append(bytes(data))
        self.on_write(bytes(data))

    def i2c_read(self, n):
        if self.nack:
            self._nack()
        return self.on_read(n)

    def on_write(self, data):
        raise NotImplementedError

    def on_read(self, n):
        raise NotImplementedError


# ---- SHT4x -----------------------------------------------------------------------------------------
SHT4X_ADDR = 0x44
# command -> (max duration ms, heater power mW, heater time ms)
_SHT_CMDS = {
    0xFD: (9, 0, 0), 0xF6: (5, 0, 0), 0xE0: (2, 0, 0),
    0x39: (1100, 200, 1000), 0x32: (110, 200, 100), 0x2F: (1100, 110, 1000), 0x24: (110, 110, 100),
    0x1E: (1100, 20, 1000), 0x15: (110, 20, 100),
}
_SHT_NOISE = {0xFD: 0, 0xF6: 2, 0xE0: 6}  # raw LSB quantisation for lower repeatability


class SHT4x(FakeChip):
    """Sensirion SHT40/41/45. Commands: 0xFD/0xF6/0xE0 measure (high/medium/low repeatability), 0x89
    serial number, 0x94 soft reset, 0x39/0x32/0x2F/0x24/0x1E/0x15 heater + measure. Reading before the
    measurement time has passed (or with nothing to read) is NACKed like the real chip. Each 16-bit word
    is followed by CRC-8 (0x31, init 0xFF). T = -45 + 175*St/65535, RH = -6 + 125*Srh/65535."""

    def __init__(self, temperature=21.0, humidity=50.0, serial=0x0F1E2D3C, timing=True):
        FakeChip.__init__(self, timing)
        self.temperature = temperature
        self.humidity = humidity
        self.serial = serial
        self._out = None
        self._ready_at = None
        self._t0 = 0
        self.heater_on_ms = 0

    def _word(self, w):
        crc = crc8(bytes([w >> 8, w & 0xFF]))
        if self.bad_crc:
            crc ^= 0x5A
        return bytes([w >> 8, w & 0xFF, crc])

    @staticmethod
    def raw_temperature(t):
        return max(0, min(65535, int((t + 45.0) * 65535 / 175.0 + 0.5)))

    @staticmethod
    def raw_humidity(rh):
        return max(0, min(65535, int((rh + 6.0) * 65535 / 125.0 + 0.5)))

    def on_write(self, data):
        if len(data) != 1:
            self._nack()
        cmd = data[0]
        if cmd in _SHT_CMDS:
            dur, power, heat_ms = _SHT_CMDS[cmd]
            t = value(self.temperature)
            if power:  # a heater pulse warms the sensor a little
                t += power / 40.0 * heat_ms / 1000.0
                self.heater_on_ms += heat_ms
            st = self.raw_temperature(t)
            srh = self.raw_humidity(value(self.humidity))
            q = _SHT_NOISE.get(cmd, 0)
            if q:
                st -= st % q
                srh -= srh % q
            self._out = self._word(st) + self._word(srh)
            self._arm(dur)
        elif cmd == 0x89:
            self._out = self._word((self.serial >> 16) & 0xFFFF) + self._word(self.serial & 0xFFFF)
            self._arm(1)
        elif cmd == 0x94:
            self._out = None
            self._arm(1)
        else:
            self._nack()

    def _arm(self, dur):
        self._t0 = _ms()
        self._ready_at = dur if self.timing else 0

    def on_read(self, n):
        if self._out is None or (self._ready_at and _elapsed(self._t0) < self._ready_at):
            self._nack()  # busy or nothing to read: the SHT4x does not acknowledge its read header
        out = self._out
        self._out = None
        return out[:n] + b"\xff" * max(0, n - len(out))


# ---- BH1750 ----------------------------------------------------------------------------------------
BH1750_ADDR = 0x23
_BH_MODES = {0x10: ("H", True), 0x11: ("H2", True), 0x13: ("L", True),
             0x20: ("H", False), 0x21: ("H2", False), 0x23: ("L", False)}


class BH1750(FakeChip):
    """ROHM BH1750FVI: 0x00 power down, 0x01 power on, 0x07 reset (data register := 0, only when
    powered), 0x10/0x11/0x13 continuous H/H2/L, 0x20/0x21/0x23 one-time H/H2/L (power down after),
    0x40|MT[7:5] and 0x60|MT[4:0] set MTreg (31..254, default 69). Reads return the 16-bit count of the
    last finished measurement: H: count = lux*1.2*MT/69, H2: twice that, L: lux*1.2 (4 lx steps)."""

    def __init__(self, lux=100.0, timing=True):
        FakeChip.__init__(self, timing)
        self.lux = lux
        self.powered = False
        self.mtreg = 69
        self._mt_hi = None
        self.mode = None
        self.continuous = False
        self._t0 = 0
        self._count = 0
        self._pending = False

    def _duration(self):
        if self.mode == "L":
            return 24
        return int(180 * self.mtreg / 69)

    def _measure(self):
        lux = max(0.0, value(self.lux))
        if self.mode == "L":
            c = int(lux * 1.2)
            c -= c % 4
        else:
            c = lux * 1.2 * self.mtreg / 69.0
            if self.mode == "H2":
                c *= 2
            c = int(c + 0.5)
        return max(0, min(65535, c))

    def _update(self):
        if self._pending and (not self.timing or _elapsed(self._t0) >= self._duration()):
            self._count = self._measure()
            if self.continuous:
                self._t0 = _ms()
            else:
                self._pending = False
                self.powered = False

    def on_write(self, data):
        for op in data:
            self._op(op)

    def _op(self, op):
        self._update()
        if op == 0x00:
            self.powered = False
            self._pending = False
        elif op == 0x01:
            self.powered = True
        elif op == 0x07:
            if self.powered:
                self._count = 0
        elif op in _BH_MODES:
            self.mode, self.continuous = _BH_MODES[op]
            self.powered = True
            self._pending = True
            self._t0 = _ms()
        elif op & 0xF8 == 0x40:
            self._mt_hi = op & 0x07
        elif op & 0xE0 == 0x60:
            hi = self._mt_hi if self._mt_hi is not None else (self.mtreg >> 5)
            mt = (hi << 5) | (op & 0x1F)
            if 31 <= mt <= 254:
                self.mtreg = mt
        else:
            self._nack()

    def on_read(self, n):
        self._update()
        c = self._count
        return (bytes([c >> 8, c & 0xFF]) + b"\xff" * n)[:n]

    @staticmethod
    def lux_from_count(count, mode="H", mtreg=69):
        lux = count / 1.2
        if mode != "L":
            lux *= 69.0 / mtreg
        if mode == "H2":
            lux /= 2
        return lux


from simchip_bme280 import BME280, BME280_ADDR  # noqa: E402,F401 - re-exported
