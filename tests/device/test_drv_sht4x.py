# SHT4x driver: byte-exact transactions from the Sensirion SHT4x datasheet, checked on a recording bus
# written here (independent of the virtual board's fake chip), CRC, conversion, error handling.
from devtest import raises

from fieldlink.drivers.base import CRCError
from fieldlink.drivers.sht4x import SHT4x, crc8


class Chip:
    """Scripted I2C target: records writes, answers reads from a queue."""

    def __init__(self, replies=()):
        self.writes = []
        self.replies = list(replies)

    def i2c_write(self, data):
        self.writes.append(bytes(data))

    def i2c_read(self, n):
        r = self.replies.pop(0)
        assert len(r) == n, "driver read %d bytes, expected %d" % (n, len(r))
        return r


class RecBus:
    """machine.I2C subset that logs every transaction as ("w", addr, bytes) / ("r", addr, n)."""

    def __init__(self):
        self.chips = {}
        self.log = []

    def _chip(self, addr):
        c = self.chips.get(addr)
        if c is None:
            raise OSError(19)  # ENODEV, as machine.I2C on a NACKed address
        return c

    def writeto(self, addr, buf, stop=True):
        self.log.append(("w", addr, bytes(buf)))
        self._chip(addr).i2c_write(bytes(buf))
        return 1

    def readfrom_into(self, addr, buf, stop=True):
        self.log.append(("r", addr, len(buf)))
        data = self._chip(addr).i2c_read(len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]

    def readfrom(self, addr, n, stop=True):
        b = bytearray(n)
        self.readfrom_into(addr, b)
        return bytes(b)


def test_crc8_datasheet_example():
    # SHT4x datasheet, CRC-8 table: polynomial 0x31, init 0xFF, example 0xBEEF -> 0x92
    assert crc8(b"\xbe\xef") == 0x92
    assert crc8(bytearray(b"\x00\xbe\xef\x00"), 1, 3) == 0x92


def test_measure_high_precision_transaction_and_conversion():
    # T raw 0x6666 = 26214 = 0.4 * 65535 exactly -> T = -45 + 175 * 0.4 = 25.0 degC
    # RH raw 0x8000 = 32768 -> RH = -6 + 125 * 32768 / 65535 = 56.500954 %
    # CRC bytes 0x93 (0x6666) and 0xA2 (0x8000) computed with the PyPI `crc` package
    # (Crc8 poly 0x31 init 0xFF, no reflection), not with the code under test.
    bus = RecBus()
    chip = bus.chips[0x44] = Chip([b"\x66\x66\x93\x80\x00\xa2"])
    s = SHT4x(bus)
    t, rh = s.measurements
    assert bus.log == [("w", 0x44, b"\xfd"), ("r", 0x44, 6)]
    assert chip.writes == [b"\xfd"]
    assert abs(t - 25.0) < 1e-9
    assert abs(rh - 56.500954) < 1e-5


def test_modes_send_their_command_and_wait():
    bus = RecBus()
    bus.chips[0x44] = Chip()
    s = SHT4x(bus, mode="medium")
    assert s.start() == 5 and bus.log[-1] == ("w", 0x44, b"\xf6")
    s.mode = "low"
    assert s.start() == 2 and bus.log[-1] == ("w", 0x44, b"\xe0")
    s.mode = "high"
    assert s.start() == 9 and bus.log[-1] == ("w", 0x44, b"\xfd")
    raises(ValueError, setattr, s, "mode", "turbo")


def test_serial_number_and_soft_reset():
    # words 0x1234 (CRC 0x37) and 0x5678 (CRC 0x7D), CRCs from the `crc` package
    bus = RecBus()
    chip = bus.chips[0x44] = Chip([b"\x12\x34\x37\x56\x78\x7d"])
    s = SHT4x(bus)
    assert s.serial_number == 0x12345678
    s.reset()
    assert chip.writes == [b"\x89", b"\x94"]


def test_crc_mismatch_raises_crc_error():
    bus = RecBus()
    bus.chips[0x44] = Chip([b"\x66\x66\x94\x80\x00\xa2", b"\x66\x66\x93\x80\x00\xa3"])
    s = SHT4x(bus)
    s.start()
    raises(CRCError, s.collect)
    s.start()
    raises(CRCError, s.collect)


def test_humidity_is_cropped_to_0_100():
    # RH raw 0xFFFF -> -6 + 125 = 119 % -> cropped to 100 (datasheet 4.6); raw 0 -> -6 % -> 0
    bus = RecBus()
    bus.chips[0x44] = Chip([b"\x66\x66\x93\xff\xff\xac", b"\x66\x66\x93\x00\x00\x81"])
    s = SHT4x(bus)
    assert s.relative_humidity == 100.0
    assert s.relative_humidity == 0.0


def test_missing_chip_raises_oserror():
    bus = RecBus()
    s = SHT4x(bus)
    e = raises(OSError, s.start)
    assert e.args[0] == 19
