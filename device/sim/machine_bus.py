# machine.I2C / machine.SoftI2C / machine.UART for the virtual board (imported into `machine`).
#
# I2C: each transaction goes to the fake chip attached with simboard.attach_i2c(bus, addr, chip):
#   a write transaction calls chip.i2c_write(bytes), a read transaction calls chip.i2c_read(n) -> bytes.
#   readfrom_mem(addr, reg, n) = i2c_write(reg bytes) then i2c_read(n) (repeated start);
#   writeto_mem(addr, reg, buf) = i2c_write(reg bytes + buf).
# A missing address (or a chip with a true `nack` attribute) raises OSError(19) -- ENODEV -- which is
# what the ESP32 port raises when the address is not acknowledged (ESP_FAIL -> MP_ENODEV).
# Hardware I2C(id) buses are keyed by id; SoftI2C buses by ("soft", scl_pin_number).
import simboard

ENODEV = 19


def _as_bytes(buf):
    if isinstance(buf, str):
        raise TypeError("object with buffer protocol required")
    return bytes(buf)


class _I2CBase:
    def _chip(self, addr):
        if isinstance(addr, bool) or not isinstance(addr, int) or not 0 <= addr <= 0x7F:
            raise ValueError("invalid I2C address")
        chip = simboard.board().i2c.get(self._key, {}).get(addr)
        if chip is None or getattr(chip, "nack", False):
            raise OSError(ENODEV)
        return chip

    def scan(self):
        devs = simboard.board().i2c.get(self._key, {})
        return sorted(a for a, c in devs.items() if 0x08 <= a <= 0x77 and not getattr(c, "nack", False))

    def _read(self, addr, n):
        if n < 0:
            raise ValueError("nbytes must be >= 0")
        data = self._chip(addr).i2c_read(n)
        data = bytes(data)
        if len(data) < n:  # a chip that stops driving SDA reads as 0xFF (pull-ups)
            data = data + b"\xff" * (n - len(data))
        return data[:n]

    def readfrom(self, addr, nbytes, stop=True):
        return self._read(addr, nbytes)

    def readfrom_into(self, addr, buf, stop=True):
        data = self._read(addr, len(buf))
        buf[:] = data
        return None

    def writeto(self, addr, buf, stop=True):
        data = _as_bytes(buf)
        self._chip(addr).i2c_write(data)
        return len(data)

    def writevto(self, addr, vector, stop=True):
        data = b"".join(_as_bytes(b) for b in vector)
        self._chip(addr).i2c_write(data)
        return len(data)

    def _memaddr(self, memaddr, addrsize):
        if addrsize not in (8, 16):
            raise ValueError("addrsize must be 8 or 16")
        if addrsize == 8:
            return bytes([memaddr & 0xFF])
        return bytes([(memaddr >> 8) & 0xFF, memaddr & 0xFF])

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        chip = self._chip(addr)
        chip.i2c_write(self._memaddr(memaddr, addrsize))
        return self._read(addr, nbytes)

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        chip = self._chip(addr)
        chip.i2c_write(self._memaddr(memaddr, addrsize))
        buf[:] = self._read(addr, len(buf))
        return None

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        self._chip(addr).i2c_write(self._memaddr(memaddr, addrsize) + _as_bytes(buf))
        return None

    # bit-level primitives are not modelled
    def start(self):
        raise OSError(95)  # EOPNOTSUPP

    def stop(self):
        raise OSError(95)

    def readinto(self, buf, nack=True):
        raise OSError(95)

    def write(self, buf):
        raise OSError(95)


def _pin_no(p):
    if p is None:
        return None
    if hasattr(p, "id"):
        return p.id
    if isinstance(p, int):
        return p
    raise TypeError("expected a Pin")


class I2C(_I2CBase):
    def __init__(self, id=0, *, scl=None, sda=None, freq=400000, timeout=50000):
        n = 1 if simboard.board().chip == "esp32c6" else 2
        if isinstance(id, bool) or not isinstance(id, int) or not 0 <= id < n:
            raise ValueError("I2C(%s) doesn't exist" % (id,))
        self.id = id
        self._key = id
        self.init(scl=scl, sda=sda, freq=freq, timeout=timeout)

    def init(self, *, scl=None, sda=None, freq=400000, timeout=50000):
        if not isinstance(freq, int) or freq <= 0:
            raise ValueError("freq must be > 0")
        self.scl = _pin_no(scl)
        self.sda = _pin_no(sda)
        self.freq = freq
        self.timeout = timeout

    def deinit(self):
        pass

    def __repr__(self):
        return "I2C(%d, scl=%s, sda=%s, freq=%d)" % (self.id, self.scl, self.sda, self.freq)


class SoftI2C(_I2CBase):
    def __init__(self, scl, sda, *, freq=400000, timeout=50000):
        self.scl = _pin_no(scl)
        self.sda = _pin_no(sda)
        if self.scl is None or self.sda is None:
            raise ValueError("scl and sda pins are required")
        self._key = ("soft", self.scl)
        self.freq = freq
        self.timeout = timeout

    def init(self, scl, sda, *, freq=400000, timeout=50000):
        self.__init__(scl, sda, freq=freq, timeout=timeout)


# ---- UART ------------------------------------------------------------------------------------------
class UART:
    """Writes go to the device attached with simboard.attach_uart(id, dev): dev.uart_rx(data) returns the
    bytes the device answers, which are queued to this UART's RX (bounded by rxbuf, overflow dropped).
    Bytes can also be pushed with simboard.uart_feed(id, data). A device may implement uart_poll() ->
    bytes for output it produces on its own; it is polled whenever the MCU looks at RX."""
    INV_TX = 1
    INV_RX = 2
    INV_RTS = 4
    INV_CTS = 8
    RTS = 1
    CTS = 2

    def __init__(self, id, baudrate=115200, bits=8, parity=None, stop=1, **kw):
        n = 2 if simboard.board().chip == "esp32c6" else 3
        if isinstance(id, bool) or not isinstance(id, int) or not 0 <= id < n:
            raise ValueError("UART(%s) doesn't exist" % (id,))
        self.id = id
        self.baudrate = 115200
        self.bits = 8
        self.parity = None
        self.stop = 1
        self.tx = None
        self.rx = None
        self.timeout = 0
        self.timeout_char = 0
        self.rxbuf = 256
        self.init(baudrate, bits, parity, stop, **kw)

    def init(self, baudrate=None, bits=None, parity=-1, stop=None, *, tx=None, rx=None, rts=None, cts=None,
             txbuf=None, rxbuf=None, timeout=None, timeout_char=None, invert=None, flow=None):
        if baudrate is not None:
            if not isinstance(baudrate, int) or baudrate <= 0:
                raise ValueError("invalid baudrate")
            self.baudrate = baudrate
        if bits is not None:
            if bits not in (5, 6, 7, 8):
                raise ValueError("invalid data bits")
            self.bits = bits
        if parity != -1:
            if parity not in (None, 0, 1):
                raise ValueError("invalid parity")
            self.parity = parity
        if stop is not None:
            if stop not in (1, 2):
                raise ValueError("invalid stop bits")
            self.stop = stop
        if tx is not None:
            self.tx = _pin_no(tx)
        if rx is not None:
            self.rx = _pin_no(rx)
        if rxbuf is not None:
            self.rxbuf = max(128, int(rxbuf))
        if timeout is not None:
            self.timeout = int(timeout)
        if timeout_char is not None:
            self.timeout_char = int(timeout_char)

    def deinit(self):
        pass

    def _rxq(self):
        b = simboard.board()
        q = b.uart_rx.get(self.id)
        if q is None:
            q = b.uart_rx[self.id] = bytearray()
        dev = b.uart.get(self.id)
        if dev is not None and hasattr(dev, "uart_poll"):
            more = dev.uart_poll()
            if more:
                q.extend(more)
        if len(q) > self.rxbuf:  # overflow: the newest bytes are lost
            q[self.rxbuf:] = b""
        return q

    def _wait(self):
        q = self._rxq()
        if q or self.timeout <= 0:
            return q
        import time
        try:
            deadline = time.ticks_add(time.ticks_ms(), self.timeout)
            while not q and time.ticks_diff(deadline, time.ticks_ms()) > 0:
                time.sleep_ms(1)
                q = self._rxq()
        except AttributeError:
            end = time.monotonic() + self.timeout / 1000
            while not q and time.monotonic() < end:
                time.sleep(0.001)
                q = self._rxq()
        return q

    def any(self):
        return len(self._rxq())

    def read(self, nbytes=None):
        q = self._wait()
        if not q:
            return None
        n = len(q) if nbytes is None else min(nbytes, len(q))
        data = bytes(q[:n])
        q[:n] = b""
        return data

    def readinto(self, buf, nbytes=None):
        want = len(buf) if nbytes is None else min(nbytes, len(buf))
        data = self.read(want)
        if data is None:
            return None
        buf[:len(data)] = data
        return len(data)

    def readline(self):
        q = self._wait()
        if not q:
            return None
        i = bytes(q).find(b"\n")
        n = len(q) if i < 0 else i + 1
        data = bytes(q[:n])
        q[:n] = b""
        return data

    def write(self, buf):
        data = buf.encode() if isinstance(buf, str) else bytes(buf)
        b = simboard.board()
        dev = b.uart.get(self.id)
        if dev is not None:
            answer = dev.uart_rx(data)
            if answer:
                self._rxq().extend(answer)
                q = b.uart_rx[self.id]
                if len(q) > self.rxbuf:
                    q[self.rxbuf:] = b""
        return len(data)

    def sendbreak(self):
        pass

    def flush(self):
        pass

    def txdone(self):
        return True

    def __repr__(self):
        return "UART(%d, baudrate=%d, bits=%d, parity=%s, stop=%d, tx=%s, rx=%s)" % (
            self.id, self.baudrate, self.bits, self.parity, self.stop, self.tx, self.rx)
