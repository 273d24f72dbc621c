# PZEM-004T v3 driver: CRC-16/MODBUS catalog check value, request frames computed by hand, the reply
# example of the PZEM-004T V3.0 manual, error paths, and the virtual board's fake meter (chips_uart).
from devtest import raises

import chips_uart
from fieldlink.drivers.base import CRCError
from fieldlink.drivers.pzem004t import PZEM004T, crc16, frame


class LoopUART:
    """machine.UART subset: write() hands the bytes to a device's uart_rx(), its answer is queued."""

    def __init__(self, dev=None):
        self.dev = dev
        self.rx = bytearray()
        self.written = []

    def write(self, data):
        self.written.append(bytes(data))
        if self.dev is not None:
            self.rx += self.dev.uart_rx(bytes(data))
        return len(data)

    def any(self):
        return len(self.rx)

    def read(self, n=None):
        n = len(self.rx) if n is None else min(n, len(self.rx))
        r = bytes(self.rx[:n])
        self.rx = self.rx[n:]
        return r or None

    def readinto(self, buf):
        n = min(len(buf), len(self.rx))
        for i in range(n):
            buf[i] = self.rx[i]
        self.rx = self.rx[n:]
        return n or None


class Canned:
    def __init__(self, reply):
        self.reply = reply

    def uart_rx(self, data):
        return self.reply


# Reply example (PZEM-004T V3.0 manual, "read the measurement result"): 220.0 V, 1.000 A, 220.0 W,
# 0 Wh, 50.0 Hz, PF 1.00, no alarm. CRC bytes 0x63 0xCE from the PyPI `crc` package (CRC-16/MODBUS).
MANUAL_REPLY = bytes((0x01, 0x04, 0x14, 0x08, 0x98, 0x03, 0xE8, 0x00, 0x00, 0x08, 0x98, 0x00, 0x00,
                      0x00, 0x00, 0x00, 0x00, 0x01, 0xF4, 0x00, 0x64, 0x00, 0x00, 0x63, 0xCE))


def test_crc16_modbus_check_value():
    assert crc16(b"123456789") == 0x4B37  # catalog check value of CRC-16/MODBUS


def test_read_request_frame_computed_by_hand():
    # CRC-16/MODBUS of 01 04 00 00 00 0A, register after each byte (init 0xFFFF, reflected poly 0xA001):
    #   0x01 -> 0x807E, 0x04 -> 0xE301, 0x00 -> 0xC022, 0x00 -> 0x1940, 0x00 -> 0xF018, 0x0A -> 0x0D70
    # transmitted low byte first: 70 0D
    assert crc16(b"\x01") == 0x807E
    assert crc16(b"\x01\x04\x00\x00\x00") == 0xF018
    expected = bytes((0x01, 0x04, 0x00, 0x00, 0x00, 0x0A, 0x70, 0x0D))
    assert bytes(frame(0x01, 0x04, b"\x00\x00\x00\x0a")) == expected
    u = LoopUART(Canned(MANUAL_REPLY))
    m = PZEM004T(u, address=0x01)
    m.start()
    assert u.written == [expected]


def test_manual_reply_decodes():
    m = PZEM004T(LoopUART(Canned(MANUAL_REPLY)), address=0x01)
    assert m.measurements() == (220.0, 1.0, 220.0, 0, 50.0, 1.0, 0)


def test_reset_energy_frame():
    # 01 42 + CRC: register 0x807E after 0x01, 0x1180 after 0x42 -> sent as 80 11 (manual example)
    u = LoopUART(Canned(bytes((0x01, 0x42, 0x80, 0x11))))
    PZEM004T(u, address=0x01).reset_energy()
    assert u.written == [bytes((0x01, 0x42, 0x80, 0x11))]


def test_bad_crc_no_answer_exception_reply():
    bad = bytearray(MANUAL_REPLY)
    bad[-1] ^= 1
    m = PZEM004T(LoopUART(Canned(bytes(bad))), address=0x01)
    m.start()
    raises(CRCError, m.collect)
    m = PZEM004T(LoopUART(Canned(b"")), address=0x01, timeout_ms=5)
    m.start()
    e = raises(OSError, m.collect)
    assert e.args[0] == 110
    m = PZEM004T(LoopUART(Canned(MANUAL_REPLY[:10])), address=0x01, timeout_ms=5)
    m.start()
    assert raises(OSError, m.collect).args[0] == 110
    exc = bytes(frame(0x01, 0x84, b"\x02"))  # exception reply, illegal address
    m = PZEM004T(LoopUART(Canned(exc)), address=0x01, timeout_ms=5)
    m.start()
    assert raises(OSError, m.collect).args[0] == 5
    other = bytearray(MANUAL_REPLY)  # answer from slave 0x02 to a request for 0x01
    other[0] = 0x02
    c = crc16(other, 0, 23)
    other[23], other[24] = c & 0xFF, c >> 8
    m = PZEM004T(LoopUART(Canned(bytes(other))), address=0x01)
    m.start()
    assert raises(OSError, m.collect).args[0] == 5


def test_stale_bytes_are_drained_before_a_request():
    u = LoopUART(Canned(MANUAL_REPLY))
    u.rx += b"\x55\xaa\x00"
    m = PZEM004T(u, address=0x01)
    assert m.measurements()[0] == 220.0


def test_sim_meter_values_and_general_address():
    dev = chips_uart.PZEM004T(address=0x07, voltage=231.4, current=12.345, power=2712.3, energy=123456,
                              frequency=49.9, power_factor=0.95, alarm_threshold=3000)
    m = PZEM004T(LoopUART(dev))  # default general address 0xF8
    v = m.measurements()
    assert v == (231.4, 12.345, 2712.3, 123456, 49.9, 0.95, 0)
    assert dev.requests[-1] == bytes((0xF8, 0x04, 0x00, 0x00, 0x00, 0x0A, 0x64, 0x64))
    dev.power = 3500.0
    assert m.measurements()[6] == 1  # power above the alarm threshold
    assert m.read_alarm_threshold() == 3000
    m.set_alarm_threshold(2500)
    assert dev.alarm_threshold == 2500
    m.reset_energy()
    assert dev.energy == 0 and m.energy == 0


def test_sim_meter_faults():
    dev = chips_uart.PZEM004T(address=0x01)
    m = PZEM004T(LoopUART(dev), address=0x01, timeout_ms=5)
    dev.corrupt_replies = 1
    raises(CRCError, m.measurements)
    assert m.voltage == 230.0
    dev.silent = True
    assert raises(OSError, m.measurements).args[0] == 110
    dev.silent = False
    m2 = PZEM004T(LoopUART(dev), address=0x02, timeout_ms=5)  # nobody at 0x02
    assert raises(OSError, m2.measurements).args[0] == 110
    # the fake rejects bad register ranges with exception code 0x02
    r = dev.uart_rx(bytes(frame(0x01, 0x04, b"\x00\x08\x00\x05")))
    assert r == bytes(frame(0x01, 0x84, b"\x02"))
