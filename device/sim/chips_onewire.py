# Virtual board: fake DS18B20 for the sim `onewire` bus (datasheet DS18B20 rev 6).
# Scratchpad (fig. 8): T_LSB T_MSB TH TL CONFIG 0xFF 0x0C 0x10 CRC. Power-up temperature register
# is +85 degC (0x0550). Function commands: Convert T 0x44, Read Scratchpad 0xBE, Write Scratchpad 0x4E
# (TH, TL, CONFIG), Copy Scratchpad 0x48, Recall E2 0xB8, Read Power Supply 0xB4.
import math

from onewire import FakeOneWireDevice, crc8_maxim

_RES_BITS = {0x1F: 9, 0x3F: 10, 0x5F: 11, 0x7F: 12}


def make_rom(serial, family=0x28):
    """8-byte ROM code in transmission order: family, 48-bit serial (LSB first), CRC."""
    b = bytearray(8)
    b[0] = family
    for i in range(6):
        b[1 + i] = (serial >> (8 * i)) & 0xFF
    b[7] = crc8_maxim(b[:7])
    return bytes(b)


def encode_temperature(t, resolution=12):
    """degC -> 16-bit register value, rounded to the resolution (undefined low bits cleared)."""
    raw = int(math.floor(t * 16 + 0.5)) & 0xFFFF
    return raw & (0xFFFF << (12 - resolution)) & 0xFFFF


class DS18B20(FakeOneWireDevice):
    def __init__(self, rom=None, serial=1, temperature=21.0, resolution=12):
        FakeOneWireDevice.__init__(self, rom if rom is not None else make_rom(serial))
        self.temperature = temperature  # what the next Convert T will measure
        self.th = 0x4B
        self.tl = 0x46
        self.config = {9: 0x1F, 10: 0x3F, 11: 0x5F, 12: 0x7F}[resolution]
        self.eeprom = (self.th, self.tl, self.config)
        self.t_reg = 0x0550  # +85 degC power-on value
        self.conversions = 0
        self.conversion_slots = 0  # read slots that return 0 after Convert T (busy)
        self.corrupt_reads = 0  # the next N scratchpad reads carry a wrong CRC
        self.commands = []  # function command bytes received, for tests
        self._wr = None  # pending Write Scratchpad bytes

    @property
    def resolution(self):
        return _RES_BITS.get((self.config & 0x60) | 0x1F, 12)

    def scratchpad(self):
        sp = bytearray((self.t_reg & 0xFF, self.t_reg >> 8, self.th, self.tl, self.config, 0xFF, 0x0C, 0x10, 0))
        sp[8] = crc8_maxim(sp[:8])
        return sp

    def on_selected_reset(self):
        self._wr = None

    def on_function_byte(self, b):
        if self._wr is not None:
            self._wr.append(b)
            if len(self._wr) == 3:
                self.th, self.tl, cfg = self._wr
                self.config = (cfg & 0x60) | 0x1F  # only R1 R0 are writable
                self._wr = None
            return
        self.commands.append(b)
        if b == 0x44:
            self.t_reg = encode_temperature(self.temperature, self.resolution)
            self.conversions += 1
            self.busy_bits(self.conversion_slots)
        elif b == 0xBE:
            sp = self.scratchpad()
            if self.corrupt_reads:
                self.corrupt_reads -= 1
                sp[8] ^= 0x5A
            self.send(sp)
        elif b == 0x4E:
            self._wr = []
        elif b == 0x48:
            self.eeprom = (self.th, self.tl, self.config)
        elif b == 0xB8:
            self.th, self.tl, self.config = self.eeprom
        elif b == 0xB4:
            self.send(b"\xff")  # externally powered
