# Maxim/Analog Devices DS18B20 1-Wire thermometer, driven through MicroPython's onewire.OneWire
# (not the ds18x20 module, so the CRC and errors are ours). Datasheet: DS18B20 rev 6 (2019):
# ROM commands p.10, function commands p.11-12 (Convert T 0x44, Read Scratchpad 0xBE, Write Scratchpad
# 0x4E), scratchpad layout fig. 8, configuration register fig. 10, temperature format table 1,
# CRC generation p.9 (Dallas/Maxim CRC-8, x^8 + x^5 + x^4 + 1, application note 27).
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from fieldlink.drivers.base import CRCError, InvalidReading, sleep_ms

_CONVERT_T = const(0x44)
_READ_SCRATCHPAD = const(0xBE)
_WRITE_SCRATCHPAD = const(0x4E)
_COPY_SCRATCHPAD = const(0x48)
_MATCH_ROM = const(0x55)
_SKIP_ROM = const(0xCC)
FAMILY_CODE = const(0x28)
# resolution bits -> (configuration register, max conversion time ms, mask of undefined LSBs)
RESOLUTIONS = {9: (0x1F, 94, 0xFFF8), 10: (0x3F, 188, 0xFFFC), 11: (0x5F, 375, 0xFFFE), 12: (0x7F, 750, 0xFFFF)}


def crc8(data, start=0, end=None):
    """Dallas/Maxim CRC-8 (poly 0x31 reflected = 0x8C, init 0, LSB first): CRC over a valid ROM or
    scratchpad including its CRC byte is 0."""
    if end is None:
        end = len(data)
    crc = 0
    for i in range(start, end):
        crc ^= data[i]
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8C if crc & 1 else crc >> 1
    return crc


def rom_from_hex(text):
    """'28ff4c6b611603a4' (transmission order, family code first) -> bytes."""
    return bytes(int(text[i:i + 2], 16) for i in range(0, 16, 2))


def temperature_from_raw(lsb, msb, resolution=12):
    """Datasheet table 1: 16-bit two's complement in 1/16 degC, low bits undefined below 12 bits."""
    v = ((msb << 8) | lsb) & RESOLUTIONS[resolution][2]
    if v & 0x8000:
        v -= 0x10000
    return v / 16


class DS18B20:
    QUANTITIES = ("temperature",)

    def __init__(self, ow, rom=None, resolution=12):
        """ow: onewire.OneWire. rom: 8-byte ROM code (bytes) or None to address the only device with
        Skip ROM. resolution: 9..12 bits (written to the scratchpad, not copied to EEPROM)."""
        self.ow = ow
        if rom is not None:
            rom = bytes(rom)
            if len(rom) != 8 or crc8(rom) != 0:
                raise ValueError("bad ROM code")
        self.rom = rom
        self._buf = bytearray(9)
        self._resolution = 12
        if resolution != 12:
            self.resolution = resolution

    @staticmethod
    def scan(ow):
        """ROM codes of the DS18B20s on the bus (family 0x28, valid CRC)."""
        return [bytes(r) for r in ow.scan() if r[0] == FAMILY_CODE and crc8(r) == 0]

    def _select(self):
        if not self.ow.reset():
            raise OSError(19)  # ENODEV: no presence pulse
        if self.rom is None:
            self.ow.writebyte(_SKIP_ROM)
        else:
            self.ow.writebyte(_MATCH_ROM)
            self.ow.write(self.rom)

    def read_scratchpad(self):
        """The 9 scratchpad bytes, CRC-checked (raises CRCError)."""
        self._select()
        self.ow.writebyte(_READ_SCRATCHPAD)
        buf = self._buf
        self.ow.readinto(buf)
        if crc8(buf, 0, 8) != buf[8]:
            raise CRCError("ds18b20 crc")
        if buf[4] & 0x9F != 0x1F:  # reserved bits of the configuration register are fixed (fig. 10)
            raise InvalidReading("ds18b20 config register")
        return buf

    @property
    def resolution(self):
        return self._resolution

    @resolution.setter
    def resolution(self, bits):
        if bits not in RESOLUTIONS:
            raise ValueError("resolution must be 9..12")
        sp = self.read_scratchpad()
        th, tl = sp[2], sp[3]
        self._select()
        self.ow.writebyte(_WRITE_SCRATCHPAD)
        self.ow.write(bytes((th, tl, RESOLUTIONS[bits][0])))
        self._resolution = bits

    def start(self):
        """Convert T; returns the maximum conversion time for the resolution in ms."""
        self._select()
        self.ow.writebyte(_CONVERT_T)
        return RESOLUTIONS[self._resolution][1]

    def collect(self):
        sp = self.read_scratchpad()
        t = temperature_from_raw(sp[0], sp[1], self._resolution)
        if t < -55.0 or t > 125.0:
            raise InvalidReading("ds18b20 out of range")
        return (t,)

    @property
    def temperature(self):
        sleep_ms(self.start())
        return self.collect()[0]
