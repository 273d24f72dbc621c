# CircuitPython `busio` for the virtual board: I2C and UART with the signatures of circuitpython-stubs,
# on the virtual board's fake chips (device/sim/machine_bus.py, chips.py).
#
# I2C: busio.I2C(scl, sda) takes the lowest free hardware controller of the chip (ESP32-S3: 0 and 1,
# ESP32-C6: 0), as CircuitPython's Espressif port does; transactions go to the chips attached with
# simboard.attach_i2c(<controller>, addr, chip). Every transfer needs the lock (try_lock / unlock), else
# RuntimeError("Function requires lock"). A missing or NACKing chip raises OSError(19) (ENODEV: the port
# maps ESP_FAIL to MP_ENODEV, ESP_ERR_TIMEOUT to MP_ETIMEDOUT). A zero-length writeto() is an address
# probe: only the address is acknowledged, the chip sees no data (what adafruit_bus_device does).
# UART: busio.UART(tx, rx, baudrate=9600, timeout=1 s) on the UART devices of simboard.attach_uart().
import sys

import machine_bus
import microcontroller
import simboard
from simboard import sleep_ms as _sleep_ms, ticks_diff as _ticks_diff, ticks_ms as _ticks_ms

_MAXSIZE = sys.maxsize


def _controllers(kind):
    chip = simboard.board().chip
    if kind == "i2c":
        return 1 if chip == "esp32c6" else 2
    return 2 if chip == "esp32c6" else 3  # UART0 is the console on both


def _in_use(kind):
    b = simboard.board()
    d = getattr(b, "cpy_periph", None)
    if d is None:
        d = b.cpy_periph = {}
    return d.setdefault(kind, {})


def _slice(buf, start, end):
    n = len(buf)
    if start < 0:
        start += n
    if end < 0:
        end += n
    start = max(0, min(start, n))
    end = max(start, min(end, n))
    return start, end


class _Bus(machine_bus._I2CBase):
    """machine_bus's chip transactions on one controller (its _key is the simboard I2C bus id)."""

    def __init__(self, key):
        self._key = key


class I2C(microcontroller._Peripheral):
    def __init__(self, scl, sda, *, frequency=100000, timeout=255):
        if not isinstance(frequency, int) or frequency <= 0:
            raise ValueError("frequency must be > 0")
        used = _in_use("i2c")
        num = None
        for i in range(_controllers("i2c")):
            if i not in used:
                num = i
                break
        if num is None:
            raise ValueError("All I2C peripherals are in use")
        self._claim(scl, sda)
        used[num] = self
        self._num = num
        self._bus = _Bus(num)
        self.scl = scl
        self.sda = sda
        self.frequency = frequency
        self.timeout = timeout
        self._locked = False

    def _free(self):
        _in_use("i2c").pop(self._num, None)

    def _check(self, lock=True):
        microcontroller._Peripheral._check(self)
        if lock and not self._locked:
            raise RuntimeError("Function requires lock")

    def try_lock(self):
        if self._deinited:
            return False
        if self._locked:
            return False
        self._locked = True
        return True

    def unlock(self):
        self._check(lock=False)
        self._locked = False

    def probe(self, address):
        self._check()
        try:
            self._bus._chip(address)
        except OSError:
            return False
        return True

    def scan(self):
        self._check()
        return self._bus.scan()

    def writeto(self, address, buffer, *, start=0, end=_MAXSIZE):
        self._check()
        s, e = _slice(buffer, start, end)
        chip = self._bus._chip(address)  # address phase: OSError(ENODEV) if nobody acknowledges
        if e > s:
            chip.i2c_write(bytes(buffer[s:e]))

    def readfrom_into(self, address, buffer, *, start=0, end=_MAXSIZE):
        self._check()
        s, e = _slice(buffer, start, end)
        if e <= s:
            raise ValueError("Buffer must be at least length 1")
        buffer[s:e] = self._bus._read(address, e - s)

    def writeto_then_readfrom(self, address, out_buffer, in_buffer, *, out_start=0, out_end=_MAXSIZE,
                              in_start=0, in_end=_MAXSIZE):
        self._check()
        os_, oe = _slice(out_buffer, out_start, out_end)
        is_, ie = _slice(in_buffer, in_start, in_end)
        if ie <= is_:
            raise ValueError("Buffer must be at least length 1")
        chip = self._bus._chip(address)
        if oe > os_:
            chip.i2c_write(bytes(out_buffer[os_:oe]))
        in_buffer[is_:ie] = self._bus._read(address, ie - is_)


class SPI(microcontroller._Peripheral):
    """busio.SPI with nothing attached (the virtual board has no SPI chips yet): locking and configure()
    behave as on CircuitPython, reads see a floating MISO (0xFF)."""

    def __init__(self, clock, MOSI=None, MISO=None, half_duplex=False):
        used = _in_use("spi")
        num = None
        for i in (2, 3):  # SPI2 / SPI3 (SPI0/1 are the flash)
            if i not in used:
                num = i
                break
        if num is None:
            raise ValueError("All SPI peripherals are in use")
        self._claim(clock, MOSI, MISO)
        used[num] = self
        self._num = num
        self._locked = False
        self.frequency = 250000

    def _free(self):
        _in_use("spi").pop(self._num, None)

    def _check(self):
        microcontroller._Peripheral._check(self)
        if not self._locked:
            raise RuntimeError("Function requires lock")

    def configure(self, *, baudrate=100000, polarity=0, phase=0, bits=8):
        self._check()
        if polarity not in (0, 1) or phase not in (0, 1) or bits != 8:
            raise ValueError("invalid SPI configuration")
        self.frequency = baudrate

    def try_lock(self):
        if self._deinited or self._locked:
            return False
        self._locked = True
        return True

    def unlock(self):
        self._locked = False

    def write(self, buffer, *, start=0, end=_MAXSIZE):
        self._check()

    def readinto(self, buffer, *, start=0, end=_MAXSIZE, write_value=0):
        self._check()
        s, e = _slice(buffer, start, end)
        buffer[s:e] = b"\xff" * (e - s)

    def write_readinto(self, out_buffer, in_buffer, *, out_start=0, out_end=_MAXSIZE, in_start=0,
                       in_end=_MAXSIZE):
        self._check()
        s, e = _slice(in_buffer, in_start, in_end)
        buffer_len = _slice(out_buffer, out_start, out_end)
        if buffer_len[1] - buffer_len[0] != e - s:
            raise ValueError("buffer slices must be of equal length")
        in_buffer[s:e] = b"\xff" * (e - s)


class _Parity:
    def __init__(self, name):
        self._name = name

    def __repr__(self):
        return "busio.UART.Parity." + self._name


class UART(microcontroller._Peripheral):
    """busio.UART(tx, rx, *, baudrate=9600, bits=8, parity=None, stop=1, timeout=1,
    receiver_buffer_size=64): read() waits up to `timeout` seconds for the first byte, then returns what
    arrived (None if nothing did), as CircuitPython does."""

    class Parity:
        ODD = _Parity("ODD")
        EVEN = _Parity("EVEN")

    def __init__(self, tx=None, rx=None, *, rts=None, cts=None, rs485_dir=None, rs485_invert=False,
                 baudrate=9600, bits=8, parity=None, stop=1, timeout=1, receiver_buffer_size=64):
        if tx is None and rx is None:
            raise ValueError("tx and rx cannot both be None")
        if bits not in (5, 6, 7, 8, 9):
            raise ValueError("bits must be in range 5 to 9")
        if stop not in (1, 2):
            raise ValueError("stop must be 1 or 2")
        if timeout < 0 or timeout > 100:
            raise ValueError("timeout must be 0.0-100.0 seconds")
        used = _in_use("uart")
        num = None
        for i in range(1, _controllers("uart")):
            if i not in used:
                num = i
                break
        if num is None:
            raise ValueError("All UART peripherals are in use")
        self._claim(tx, rx, rts, cts, rs485_dir)
        used[num] = self
        self._num = num
        # the machine_bus UART does the byte queueing / device answers for controller `num`
        self._u = _MbUART(num, baudrate, max(128, receiver_buffer_size))
        self.baudrate = baudrate
        self.timeout = float(timeout)

    def _free(self):
        _in_use("uart").pop(self._num, None)

    @property
    def in_waiting(self):
        self._check()
        return self._u.any()

    def reset_input_buffer(self):
        self._check()
        self._u.read()

    def _wait(self, n):
        deadline = _ticks_ms() + int(self.timeout * 1000)
        while self._u.any() < n and _ticks_diff(deadline, _ticks_ms()) > 0:
            _sleep_ms(1)

    def read(self, nbytes=None):
        self._check()
        if nbytes == 0:
            return b""
        self._wait(1 if nbytes is None else nbytes)
        data = self._u.read(nbytes)
        return data if data else None

    def readinto(self, buf):
        self._check()
        data = self.read(len(buf))
        if data is None:
            return None
        buf[:len(data)] = data
        return len(data)

    def readline(self):
        self._check()
        deadline = _ticks_ms() + int(self.timeout * 1000)
        while _ticks_diff(deadline, _ticks_ms()) > 0:
            q = self._u._rxq()
            if b"\n" in bytes(q):
                break
            _sleep_ms(1)
        return self._u.readline()

    def write(self, buf):
        self._check()
        if isinstance(buf, str):
            raise TypeError("object with buffer protocol required")
        return self._u.write(buf)


def _MbUART(num, baudrate, rxbuf):
    # machine_bus.UART validates the id against the chip's UART count, as we did above
    return machine_bus.UART(num, baudrate, rxbuf=rxbuf, timeout=0)
