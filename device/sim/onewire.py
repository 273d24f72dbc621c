# Virtual board: MicroPython's `onewire` module (micropython/drivers/onewire/onewire.py API) on a
# simulated bus. Fake devices attach to a pin number and speak the 1-Wire protocol bit by bit:
# reset/presence, ROM commands (Read ROM 0x33, Match ROM 0x55, Skip ROM 0xCC, Search ROM 0xF0,
# Alarm Search 0xEC) and, once selected, the device's function commands (see FakeOneWireDevice).
# The bus is wired-AND: a read slot returns 1 unless some active device pulls it to 0.
#
#   import onewire, chips_onewire
#   onewire.attach(4, chips_onewire.DS18B20(rom=..., temperature=21.5))
#   ow = onewire.OneWire(machine.Pin(4))
_devices = {}  # pin number -> list of fake devices


class OneWireError(Exception):
    pass


def pin_id(pin):
    """The pin number of an int, a sim machine.Pin, or anything whose repr is 'Pin(N)'."""
    if isinstance(pin, int):
        return pin
    for attr in ("id", "_id", "pin", "num", "number"):
        v = getattr(pin, attr, None)
        if callable(v):
            try:
                v = v()
            except TypeError:
                v = None
        if isinstance(v, int):
            return v
    r = repr(pin)
    digits = ""
    for ch in r[r.find("(") + 1:]:
        if "0" <= ch <= "9":
            digits += ch
        elif digits:
            break
    if not digits:
        raise ValueError("cannot tell the pin number of %r" % (pin,))
    return int(digits)


def attach(pin, device):
    _devices.setdefault(pin_id(pin), []).append(device)
    return device


def detach(pin, device=None):
    lst = _devices.get(pin_id(pin), [])
    if device is None:
        del lst[:]
    elif device in lst:
        lst.remove(device)


def devices(pin):
    return _devices.get(pin_id(pin), [])


def crc8_maxim(data):
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8C if crc & 1 else crc >> 1
    return crc


# ROM-layer states of a fake device
_IDLE = 0       # not selected: ignores everything until the next reset
_ROM_CMD = 1    # receiving the ROM command byte
_MATCH = 2      # receiving 64 ROM bits to compare
_SEARCH = 3     # search: read bit, read complement, then master writes a bit
_READ_ROM = 4   # sending the 64 ROM bits
_FUNCTION = 5   # selected: bytes go to on_function_byte(), reads come from the output queue


class FakeOneWireDevice:
    """Base of fake 1-Wire slaves: ROM layer implemented here; subclasses implement the function layer
    with on_function_byte(b) (a byte written by the master after selection) and use send(bytes) to queue
    data for the master's read slots. busy_bits(n) makes the next n read slots return 0 (conversion)."""

    def __init__(self, rom):
        rom = bytes(rom)
        if len(rom) != 8:
            raise ValueError("ROM code is 8 bytes")
        self.rom = rom
        self.present = True
        self.alarm = False
        self._state = _IDLE
        self._bits = 0
        self._nbits = 0
        self._pos = 0
        self._step = 0
        self._out = []  # queued bits for read slots
        self._busy = 0

    def rom_bit(self, i):
        return (self.rom[i >> 3] >> (i & 7)) & 1

    # bus interface, called by OneWire
    def ow_reset(self):
        self._state = _ROM_CMD if self.present else _IDLE
        self._bits = self._nbits = self._pos = self._step = 0
        self._out = []
        self._busy = 0
        return self.present

    def ow_read_bit(self):
        st = self._state
        if st == _SEARCH:
            if self._step == 0:
                self._step = 1
                return self.rom_bit(self._pos)
            if self._step == 1:
                self._step = 2
                return self.rom_bit(self._pos) ^ 1
            return 1
        if st == _READ_ROM:
            b = self.rom_bit(self._pos)
            self._pos += 1
            if self._pos == 64:
                self._state = _FUNCTION
                self._reset_bits()
            return b
        if st == _FUNCTION:
            if self._out:
                return self._out.pop(0)
            if self._busy:
                self._busy -= 1
                return 0
            return self.idle_read_bit()
        return 1

    def ow_write_bit(self, bit):
        st = self._state
        if st == _IDLE:
            return
        if st == _SEARCH:
            if self._step != 2:
                return
            if bit != self.rom_bit(self._pos):
                self._state = _IDLE
                return
            self._pos += 1
            self._step = 0
            if self._pos == 64:
                self._state = _FUNCTION
                self._reset_bits()
            return
        if st == _MATCH:
            if bit != self.rom_bit(self._pos):
                self._state = _IDLE
                return
            self._pos += 1
            if self._pos == 64:
                self._state = _FUNCTION
                self._reset_bits()
            return
        if st == _READ_ROM:
            return
        self._bits |= (bit & 1) << self._nbits
        self._nbits += 1
        if self._nbits < 8:
            return
        b = self._bits
        self._reset_bits()
        if st == _ROM_CMD:
            self._rom_command(b)
        elif st == _FUNCTION:
            self.on_function_byte(b)

    def _reset_bits(self):
        self._bits = 0
        self._nbits = 0

    def _rom_command(self, cmd):
        self._pos = 0
        self._step = 0
        if cmd == 0x55:
            self._state = _MATCH
        elif cmd == 0xCC:
            self._state = _FUNCTION
        elif cmd == 0x33:
            self._state = _READ_ROM
        elif cmd == 0xF0 or (cmd == 0xEC and self.alarm):
            self._state = _SEARCH
        else:
            self._state = _IDLE
        self.on_selected_reset()

    # helpers for subclasses
    def send(self, data):
        for byte in data:
            for i in range(8):
                self._out.append((byte >> i) & 1)

    def busy_bits(self, n):
        self._busy = n

    def on_selected_reset(self):
        pass

    def on_function_byte(self, b):
        pass

    def idle_read_bit(self):
        return 1


class OneWire:
    SEARCH_ROM = 0xF0
    MATCH_ROM = 0x55
    SKIP_ROM = 0xCC

    def __init__(self, pin):
        self.pin = pin
        self._pin_id = pin_id(pin)
        self.resets = 0

    def _devs(self):
        return _devices.get(self._pin_id, ())

    def reset(self, required=False):
        self.resets += 1
        present = False
        for d in self._devs():
            if d.ow_reset():
                present = True
        if required and not present:
            raise OneWireError
        return present

    def readbit(self):
        v = 1
        for d in self._devs():
            v &= d.ow_read_bit()
        return v

    def writebit(self, value):
        for d in self._devs():
            d.ow_write_bit(1 if value else 0)

    def readbyte(self):
        v = 0
        for i in range(8):
            v |= self.readbit() << i
        return v

    def writebyte(self, value):
        for i in range(8):
            self.writebit((value >> i) & 1)

    def write(self, buf):
        for b in buf:
            self.writebyte(b)

    def readinto(self, buf):
        for i in range(len(buf)):
            buf[i] = self.readbyte()

    def select_rom(self, rom):
        self.reset()
        self.writebyte(self.MATCH_ROM)
        self.write(rom)

    def scan(self):
        devices = []
        diff = 65
        rom = False
        for _ in range(0xFF):
            rom, diff = self._search_rom(rom, diff)
            if rom:
                devices += [rom]
            if diff == 0:
                break
        return devices

    def _search_rom(self, l_rom, diff):
        # the algorithm of micropython/drivers/onewire/onewire.py
        if not self.reset():
            return None, 0
        self.writebyte(self.SEARCH_ROM)
        if not l_rom:
            l_rom = bytearray(8)
        rom = bytearray(8)
        next_diff = 0
        i = 64
        for byte in range(8):
            r_b = 0
            for bit in range(8):
                b = self.readbit()
                if self.readbit():
                    if b:  # no devices or an error on the bus
                        return None, 0
                else:
                    if not b:  # collision: two devices with different bit values
                        if diff > i or ((l_rom[byte] & (1 << bit)) and diff != i):
                            b = 1
                            next_diff = i
                self.writebit(b)
                if b:
                    r_b |= 1 << bit
                i -= 1
            rom[byte] = r_b
        return rom, next_diff

    def crc8(self, data):
        return crc8_maxim(data)
