# Peacefair PZEM-004T v3.0 AC energy meter, Modbus-RTU over a UART (9600 8N1).
# Manual: "PZEM-004T V3.0 User Manual": input registers 0x0000..0x0009 read with function 0x04,
# reset energy function 0x42, exception replies set bit 7 of the function code.
# CRC-16/MODBUS: poly 0x8005 reflected (0xA001), init 0xFFFF, sent low byte first; check 0x4B37.
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from fieldlink.runtime.clock import ticks_diff as _diff, ticks_ms as _ms

from fieldlink.drivers.base import CRCError, sleep_ms

_READ_INPUT = const(0x04)
_READ_HOLDING = const(0x03)
_WRITE_SINGLE = const(0x06)
_RESET_ENERGY = const(0x42)
_REG_COUNT = const(10)
_RESP_LEN = const(25)  # addr, func, byte count (20), 20 data bytes, crc16
ADDRESS_GENERAL = const(0xF8)  # answers whatever its configured address (one meter per bus only)
BAUDRATE = const(9600)


def crc16(data, start=0, end=None):
    if end is None:
        end = len(data)
    crc = 0xFFFF
    for i in range(start, end):
        crc ^= data[i]
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def frame(address, function, payload=b""):
    """A complete Modbus-RTU frame: address, function, payload, CRC16 low byte first."""
    f = bytearray(2 + len(payload) + 2)
    f[0] = address
    f[1] = function
    f[2:2 + len(payload)] = payload
    c = crc16(f, 0, len(f) - 2)
    f[-2] = c & 0xFF
    f[-1] = c >> 8
    return f


def _reg(b, i):
    return (b[3 + 2 * i] << 8) | b[4 + 2 * i]


class PZEM004T:
    QUANTITIES = ("voltage", "current", "power", "energy", "frequency", "power_factor", "alarm")

    def __init__(self, uart, address=ADDRESS_GENERAL, timeout_ms=200):
        self.uart = uart
        self.address = address
        self.timeout_ms = timeout_ms
        self._req = frame(address, _READ_INPUT, b"\x00\x00\x00\x0a")
        self._resp = bytearray(_RESP_LEN)
        self._mv = memoryview(self._resp)

    def _drain(self):
        u = self.uart
        while u.any():
            u.read()

    def _receive(self, mv):
        """Fill mv from the UART within timeout_ms; returns the count (short = timeout)."""
        got = 0
        n = len(mv)
        t0 = _ms()
        while got < n:
            if self.uart.any():
                r = self.uart.readinto(mv[got:])
                if r:
                    got += r
                    # an exception reply is 5 bytes long: stop as soon as it is complete
                    if got >= 5 and mv[1] & 0x80:
                        return 5
                    continue
            if _diff(_ms(), t0) >= self.timeout_ms:
                break
            sleep_ms(2)
        return got

    def _check(self, buf, n, function):
        if n < 4:
            raise OSError(110)  # ETIMEDOUT: no (complete) answer
        if crc16(buf, 0, n - 2) != buf[n - 2] | (buf[n - 1] << 8):
            raise CRCError("pzem crc")
        if self.address != ADDRESS_GENERAL and buf[0] != self.address:
            raise OSError(5)  # EIO: answer from another slave
        if buf[1] == function | 0x80:
            raise OSError(5)  # EIO: Modbus exception reply, code in buf[2]
        if buf[1] != function:
            raise OSError(5)

    def start(self):
        """Send the read request for the 10 input registers; returns ms to wait for the reply."""
        self._drain()
        self.uart.write(self._req)
        return 0

    def collect(self):
        """(voltage V, current A, power W, energy Wh, frequency Hz, power_factor, alarm 0/1)."""
        b = self._resp
        n = self._receive(self._mv)
        if n != _RESP_LEN:
            if n >= 5 and b[1] & 0x80:
                self._check(b, 5, _READ_INPUT)
            raise OSError(110)
        self._check(b, n, _READ_INPUT)
        if b[2] != 2 * _REG_COUNT:
            raise OSError(5)
        reg = _reg
        voltage = reg(b, 0) / 10
        current = (reg(b, 1) | (reg(b, 2) << 16)) / 1000
        power = (reg(b, 3) | (reg(b, 4) << 16)) / 10
        energy = reg(b, 5) | (reg(b, 6) << 16)
        return (voltage, current, power, energy, reg(b, 7) / 10, reg(b, 8) / 100, 1 if reg(b, 9) else 0)

    def measurements(self):
        sleep_ms(self.start())
        return self.collect()

    @property
    def voltage(self):
        return self.measurements()[0]

    @property
    def current(self):
        return self.measurements()[1]

    @property
    def power(self):
        return self.measurements()[2]

    @property
    def energy(self):
        return self.measurements()[3]

    @property
    def frequency(self):
        return self.measurements()[4]

    @property
    def power_factor(self):
        return self.measurements()[5]

    def _transact(self, req, function, n):
        self._drain()
        self.uart.write(req)
        buf = bytearray(n)
        got = self._receive(memoryview(buf))
        if got >= 5 and buf[1] & 0x80:
            self._check(buf, 5, function)
        if got != n:
            raise OSError(110)
        self._check(buf, n, function)
        return buf

    def reset_energy(self):
        """Function 0x42: the meter echoes the 4-byte request on success."""
        self._transact(frame(self.address, _RESET_ENERGY), _RESET_ENERGY, 4)

    def read_alarm_threshold(self):
        """Holding register 0x0001: power alarm threshold in W."""
        b = self._transact(frame(self.address, _READ_HOLDING, b"\x00\x01\x00\x01"), _READ_HOLDING, 7)
        return (b[3] << 8) | b[4]

    def set_alarm_threshold(self, watts):
        p = bytes((0, 1, (watts >> 8) & 0xFF, watts & 0xFF))
        self._transact(frame(self.address, _WRITE_SINGLE, p), _WRITE_SINGLE, 8)
