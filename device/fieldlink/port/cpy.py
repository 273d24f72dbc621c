# fieldlink hardware port: CircuitPython (busio, digitalio, analogio, espnow, wifi, microcontroller,
# alarm, supervisor). The rest of fieldlink sees the same small API as on MicroPython (port/mpy.py):
#   I2C(bus)            machine.I2C's transfer methods (writeto, readfrom_into, readfrom_mem[_into],
#                       writeto_mem, scan) on a busio.I2C, taking and releasing its lock per transfer
#   pin(name)           board.<name> (CircuitPython pin names from the board config: "SCL", "D5", ...)
#   i2c(cfg) / adc(name) / uart(cfg) / out_pin(name, level)   built from the board config
# Type comments (not annotations, which would cost RAM and need `typing`) are checked with mypy against
# circuitpython-stubs: tests/unit/test_port_cpy_typing.py.
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

import busio  # noqa: F401 - (type comments)

_ENODEV = const(19)
_ETIMEDOUT = const(110)
_LOCK_SPINS = const(100000)


class I2C:
    """The machine.I2C subset fieldlink's drivers use, on a busio.I2C. Every transfer takes the bus lock
    and releases it (a bus shared with Adafruit drivers keeps working). Errors are the bus's OSErrors
    (ENODEV for a NACK); a lock held elsewhere for too long raises OSError(ETIMEDOUT)."""

    def __init__(self, bus):
        # type: (busio.I2C) -> None
        self.bus = bus
        self._reg = bytearray(2)

    def _lock(self):
        # type: () -> None
        bus = self.bus
        for _ in range(_LOCK_SPINS):
            if bus.try_lock():
                return
        raise OSError(_ETIMEDOUT)

    def scan(self):
        # type: () -> list[int]
        self._lock()
        try:
            return self.bus.scan()
        finally:
            self.bus.unlock()

    def writeto(self, addr, buf, stop=True):
        # type: (int, bytes | bytearray | memoryview, bool) -> int
        self._lock()
        try:
            self.bus.writeto(addr, buf)
        finally:
            self.bus.unlock()
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        # type: (int, bytearray | memoryview, bool) -> None
        self._lock()
        try:
            self.bus.readfrom_into(addr, buf)
        finally:
            self.bus.unlock()

    def readfrom(self, addr, nbytes, stop=True):
        # type: (int, int, bool) -> bytes
        buf = bytearray(nbytes)
        self.readfrom_into(addr, buf)
        return bytes(buf)

    def _memaddr(self, memaddr, addrsize):
        # type: (int, int) -> int
        if addrsize == 8:
            self._reg[0] = memaddr & 0xFF
            return 1
        if addrsize == 16:
            self._reg[0] = (memaddr >> 8) & 0xFF
            self._reg[1] = memaddr & 0xFF
            return 2
        raise ValueError("addrsize must be 8 or 16")

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        # type: (int, int, bytearray | memoryview, int) -> None
        n = self._memaddr(memaddr, addrsize)
        self._lock()
        try:  # register address, repeated start, read: what machine.I2C.readfrom_mem_into does
            self.bus.writeto_then_readfrom(addr, self._reg, buf, out_end=n)
        finally:
            self.bus.unlock()

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        # type: (int, int, int, int) -> bytes
        buf = bytearray(nbytes)
        self.readfrom_mem_into(addr, memaddr, buf, addrsize=addrsize)
        return bytes(buf)

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        # type: (int, int, bytes | bytearray | memoryview, int) -> None
        n = self._memaddr(memaddr, addrsize)
        data = bytearray(n + len(buf))
        data[:n] = self._reg[:n]
        data[n:] = buf
        self.writeto(addr, data)
