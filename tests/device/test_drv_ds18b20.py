# DS18B20 driver over onewire.OneWire: CRC-8 from Maxim application note 27, temperature encoding from
# the DS18B20 datasheet table 1, byte-exact 1-Wire transactions on a recording bus written here, and the
# virtual board's bit-level onewire bus with fake DS18B20s (search, match ROM, corruption, absence).
from devtest import raises

import chips_onewire
import onewire
from fieldlink.drivers.base import CRCError, InvalidReading
from fieldlink.drivers.ds18b20 import DS18B20, crc8, rom_from_hex, temperature_from_raw

# Maxim AN27 ("Understanding and Using Cyclic Redundancy Checks with Maxim 1-Wire and iButton
# Products"), worked example: family code 0x02, serial 0x00000001B81C -> CRC 0xA2.
AN27_ROM = bytes((0x02, 0x1C, 0xB8, 0x01, 0x00, 0x00, 0x00, 0xA2))


def test_crc8_maxim_application_note_example():
    assert crc8(AN27_ROM, 0, 7) == 0xA2
    assert crc8(AN27_ROM) == 0  # CRC over data + CRC is zero
    assert onewire.crc8_maxim(AN27_ROM[:7]) == 0xA2  # the sim's own implementation
    assert onewire.OneWire(99).crc8(AN27_ROM[:7]) == 0xA2
    # catalog check value of CRC-8/MAXIM-DOW: "123456789" -> 0xA1
    assert crc8(b"123456789") == 0xA1


def test_temperature_register_table_1():
    # DS18B20 datasheet table 1 (12-bit): register value -> degC
    table = [(0x07D0, 125.0), (0x0550, 85.0), (0x0191, 25.0625), (0x00A2, 10.125), (0x0008, 0.5),
             (0x0000, 0.0), (0xFFF8, -0.5), (0xFF5E, -10.125), (0xFE6F, -25.0625), (0xFC90, -55.0)]
    for raw, t in table:
        assert temperature_from_raw(raw & 0xFF, raw >> 8) == t, hex(raw)
        assert chips_onewire.encode_temperature(t) == raw
    # 9-bit resolution: bits 2..0 undefined -> 0x0191 reads as 0x0190 = 25.0
    assert temperature_from_raw(0x91, 0x01, 9) == 25.0


class RecOW:
    """onewire.OneWire stand-in that logs calls and plays a scratchpad back."""

    def __init__(self, scratchpad, present=True):
        self.log = []
        self.sp = bytes(scratchpad)
        self.present = present

    def reset(self, required=False):
        self.log.append("reset")
        return self.present

    def writebyte(self, b):
        self.log.append(b)

    def write(self, buf):
        self.log.append(bytes(buf))

    def readinto(self, buf):
        self.log.append(("read", len(buf)))
        for i in range(len(buf)):
            buf[i] = self.sp[i]


def scratchpad(t_raw, config=0x7F, crc=None):
    sp = bytearray((t_raw & 0xFF, t_raw >> 8, 0x4B, 0x46, config, 0xFF, 0x0C, 0x10, 0))
    sp[8] = crc8(sp, 0, 8) if crc is None else crc
    return bytes(sp)


def test_convert_and_read_transactions_with_match_rom():
    rom = rom_from_hex("28ff4c6b61160391")
    rom = rom[:7] + bytes((crc8(rom, 0, 7),))
    ow = RecOW(scratchpad(0x0191))
    s = DS18B20(ow, rom)
    assert s.start() == 750
    assert s.collect() == (25.0625,)
    assert ow.log == ["reset", 0x55, rom, 0x44, "reset", 0x55, rom, 0xBE, ("read", 9)]


def test_skip_rom_and_resolution_write():
    ow = RecOW(scratchpad(0x0191))
    s = DS18B20(ow, resolution=10)
    # resolution: read scratchpad (keep TH/TL), then Write Scratchpad 0x4E TH TL CONFIG(0x3F = 10 bit)
    assert ow.log == ["reset", 0xCC, 0xBE, ("read", 9), "reset", 0xCC, 0x4E, b"\x4b\x46\x3f"]
    assert s.start() == 188
    raises(ValueError, setattr, s, "resolution", 13)
    raises(ValueError, DS18B20, ow, b"\x28\x00\x00\x00\x00\x00\x00\x01")  # bad ROM CRC


def test_crc_mismatch_all_zero_bus_and_absence():
    s = DS18B20(RecOW(scratchpad(0x0191, crc=0x00)))
    raises(CRCError, s.collect)
    # a shorted bus reads all zeros: the CRC of zeros is zero, the fixed config bits catch it
    s = DS18B20(RecOW(bytes(9)))
    raises(InvalidReading, s.collect)
    s = DS18B20(RecOW(scratchpad(0x0191), present=False))
    e = raises(OSError, s.start)
    assert e.args[0] == 19


def test_sim_bus_search_finds_every_device():
    pin = 31
    onewire.detach(pin)
    roms = [chips_onewire.make_rom(s) for s in (0x0000000000A5, 0x0000000000A4, 0x123456789ABC)]
    for r in roms:
        onewire.attach(pin, chips_onewire.DS18B20(rom=r))
    found = onewire.OneWire(pin).scan()
    assert sorted(bytes(r) for r in found) == sorted(roms)
    assert sorted(DS18B20.scan(onewire.OneWire(pin))) == sorted(roms)
    onewire.detach(pin)
    assert onewire.OneWire(pin).scan() == []


def test_sim_two_sensors_addressed_by_rom():
    pin = 32
    onewire.detach(pin)
    a = onewire.attach(pin, chips_onewire.DS18B20(serial=1, temperature=21.5))
    b = onewire.attach(pin, chips_onewire.DS18B20(serial=2, temperature=-10.125))
    ow = onewire.OneWire(pin)
    sa = DS18B20(ow, a.rom)
    sb = DS18B20(ow, b.rom, resolution=9)
    assert b.resolution == 9 and a.resolution == 12
    assert sa.temperature == 21.5
    assert sb.start() == 94
    assert sb.collect() == (-10.5,)  # -10.125 at 9 bits (0.5 degC steps): 0xFF5E & ~7 = 0xFF58
    assert a.conversions == 1 and b.conversions == 1
    # the power-on value is 85 degC until the first conversion
    c = onewire.attach(pin, chips_onewire.DS18B20(serial=3))
    assert DS18B20(ow, c.rom).collect() == (85.0,)
    onewire.detach(pin)


def test_sim_corrupted_scratchpad_and_missing_device():
    pin = 33
    onewire.detach(pin)
    d = onewire.attach(pin, chips_onewire.DS18B20(temperature=30.0))
    s = DS18B20(onewire.OneWire(pin))
    d.corrupt_reads = 1
    s.start()
    raises(CRCError, s.collect)
    assert s.collect() == (30.0,)
    d.present = False
    raises(OSError, s.start)
    onewire.detach(pin)
    raises(OSError, s.start)


def test_sim_read_rom_and_busy_slots():
    pin = 34
    onewire.detach(pin)
    d = onewire.attach(pin, chips_onewire.DS18B20(serial=7))
    ow = onewire.OneWire(pin)
    assert ow.reset()
    ow.writebyte(0x33)  # Read ROM
    buf = bytearray(8)
    ow.readinto(buf)
    assert bytes(buf) == d.rom and crc8(buf) == 0
    d.conversion_slots = 3
    ow.reset()
    ow.writebyte(0xCC)
    ow.writebyte(0x44)
    assert [ow.readbit() for _ in range(5)] == [0, 0, 0, 1, 1]  # busy, then done
    onewire.detach(pin)
    assert not ow.reset()
    raises(onewire.OneWireError, ow.reset, True)
