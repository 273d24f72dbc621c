# BH1750FVI driver: opcodes and the conversion example from the ROHM datasheet, on a recording bus.
from devtest import raises

from fieldlink.drivers.bh1750 import BH1750


class RecBus:
    def __init__(self, replies=(), present=True):
        self.log = []
        self.replies = list(replies)
        self.present = present

    def writeto(self, addr, buf, stop=True):
        if not self.present:
            raise OSError(19)
        self.log.append(("w", addr, bytes(buf)))

    def readfrom_into(self, addr, buf, stop=True):
        if not self.present:
            raise OSError(19)
        self.log.append(("r", addr, len(buf)))
        r = self.replies.pop(0)
        for i in range(len(buf)):
            buf[i] = r[i]


def test_datasheet_example_one_time_high_resolution():
    # Datasheet p.7 example: High Byte 1000_0011, Low Byte 1001_0000
    # -> (2^15 + 2^9 + 2^8 + 2^7 + 2^4) / 1.2 = 33680 / 1.2 = 28066.7 lx
    bus = RecBus([b"\x83\x90"])
    s = BH1750(bus)
    lux = s.lux
    assert bus.log == [("w", 0x23, b"\x01"), ("w", 0x23, b"\x20"), ("r", 0x23, 2)]
    assert abs(lux - 28066.667) < 0.001


def test_mtreg_change_opcodes_and_scaling():
    # Datasheet p.11: MTreg is written as 01000_MT[7:5] then 011_MT[4:0].
    # default 69 = 0b010_00101 -> 0x42, 0x65;  138 = 0b100_01010 -> 0x44, 0x6A
    bus = RecBus([b"\x03\xe8"])
    s = BH1750(bus, address=0x5C, mtreg=138)
    assert bus.log == [("w", 0x5C, b"\x01"), ("w", 0x5C, b"\x44"), ("w", 0x5C, b"\x6a")]
    s.mtreg = 69
    assert bus.log[-2:] == [("w", 0x5C, b"\x42"), ("w", 0x5C, b"\x65")]
    s.mtreg = 138
    # count 1000 at MTreg 138: 1000 / 1.2 * 69 / 138 = 416.667 lx; max time 180 ms * 138/69 = 360 ms
    assert s.start() == 360
    (lux,) = s.collect()
    assert abs(lux - 416.6667) < 0.001
    raises(ValueError, setattr, s, "mtreg", 30)
    raises(ValueError, setattr, s, "mtreg", 255)


def test_high2_and_low_modes():
    # high2 (0.5 lx resolution, opcode 0x21): count 1000 -> 1000 / 1.2 / 2 = 416.667 lx
    # low (4 lx resolution, opcode 0x23, 24 ms max): count 1000 -> 833.333 lx
    bus = RecBus([b"\x03\xe8", b"\x03\xe8"])
    s = BH1750(bus, mode="high2")
    assert s.start() == 180
    assert abs(s.collect()[0] - 416.6667) < 0.001
    s.mode = "low"
    assert s.start() == 24
    assert abs(s.collect()[0] - 833.3333) < 0.001
    assert [e[2] for e in bus.log if e[0] == "w"] == [b"\x01", b"\x21", b"\x23"]


def test_continuous_mode_sends_opcode_once():
    bus = RecBus([b"\x00\x0c", b"\x00\x18"])
    s = BH1750(bus, continuous=True)
    assert s.start() == 180
    assert s.collect() == (10.0,)  # 12 / 1.2
    assert s.start() == 0
    assert s.collect() == (20.0,)
    assert [e[2] for e in bus.log if e[0] == "w"] == [b"\x01", b"\x10"]
    s.power_down()
    assert bus.log[-1] == ("w", 0x23, b"\x00")
    s.start()
    assert bus.log[-1] == ("w", 0x23, b"\x10")


def test_missing_chip_raises_oserror():
    e = raises(OSError, BH1750, RecBus(present=False))
    assert e.args[0] == 19
