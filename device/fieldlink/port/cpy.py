# fieldlink hardware port: CircuitPython (board, busio, digitalio, analogio, espnow, wifi,
# microcontroller, alarm). The rest of fieldlink sees the functions of port/mpy.py, with objects that
# have the MicroPython methods fieldlink uses:
#   out_pin(name, level) -> .value([v]) .on() .off()           digitalio.DigitalInOut, output from the start
#   i2c(bcfg) -> I2C: machine.I2C's transfers on busio.I2C     taking and releasing the bus lock per transfer
#   adc(name) -> .read_u16() .read_uv()                        analogio.AnalogIn
#   uart(id, cfg) -> .any() .read() .readinto() .write()       busio.UART (pins from cfg tx/rx)
#   radio(cfg) -> (wlan, esp, mac)                             MicroPython's WLAN/ESPNow subset the link uses
#   wdt(ms), rtc(), woke_from_deepsleep(), deepsleep_fn(), reset_fn()
# Pins are CircuitPython pin names from the board config ("SCL", "D5", "A0": attributes of `board`).
# Type comments (not annotations, which would cost RAM and need `typing`) are checked with mypy against
# circuitpython-stubs: tests/unit/test_port_cpy_typing.py.
try:
    from micropython import const
except ImportError:  # CPython without Blinka's micropython module
    def const(x):  # type: ignore[no-untyped-def,misc]
        return x

import analogio
import board
import busio
import digitalio
import espnow
import microcontroller
import wifi

NAME = "circuitpython"

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


# CircuitPython claims a pin for the object that uses it until deinit(); the role and its relays and
# sensors are rebuilt after a failure (fieldlink.main.run), so each hardware object is made once and
# handed out again: keyed by ("out", pin), ("i2c", scl, sda), ("adc", pin), ("uart", tx, rx), ("radio",)
# and the board's MAC (one board on hardware; several in one process on the virtual board).
_made = {}  # type: dict[tuple[object, ...], object]


def _key(*parts):
    # type: (str) -> tuple[object, ...]
    return (bytes(wifi.radio.mac_address),) + parts  # type: ignore[arg-type]  # ReadableBuffer


def pin(name):
    # type: (str) -> microcontroller.Pin
    p = getattr(board, name, None)
    if p is None:
        raise ValueError("board has no pin %r" % (name,))
    return p  # type: ignore[no-any-return]


class Out:
    """machine.Pin's output methods on a digitalio.DigitalInOut."""

    def __init__(self, io):
        # type: (digitalio.DigitalInOut) -> None
        self.io = io

    def value(self, v=None):
        # type: (int | bool | None) -> int | None
        if v is None:
            return 1 if self.io.value else 0
        self.io.value = bool(v)
        return None

    def on(self):
        # type: () -> None
        self.io.value = True

    def off(self):
        # type: () -> None
        self.io.value = False


def out_pin(name, value):
    # type: (str, int) -> Out
    key = _key("out", name)
    o = _made.get(key)
    if isinstance(o, Out):
        o.io.switch_to_output(value=bool(value))
        return o
    io = digitalio.DigitalInOut(pin(name))
    io.switch_to_output(value=bool(value))  # created at its level: no glitch
    o = _made[key] = Out(io)
    return o


def i2c(bcfg):
    # type: (dict[str, object]) -> I2C
    key = _key("i2c", str(bcfg["scl"]), str(bcfg["sda"]))
    o = _made.get(key)
    if isinstance(o, I2C):
        return o
    freq = bcfg.get("freq", 100000)
    o = _made[key] = I2C(busio.I2C(pin(str(bcfg["scl"])), pin(str(bcfg["sda"])),
                                   frequency=freq if isinstance(freq, int) else 100000))
    return o


class ADC:
    """machine.ADC's read_u16() / read_uv() on analogio.AnalogIn (value = mV * 65535 / 3300 on Espressif)."""

    def __init__(self, a):
        # type: (analogio.AnalogIn) -> None
        self.a = a
        self._uv_per_count = int(a.reference_voltage * 1000000) / 65535

    def read_u16(self):
        # type: () -> int
        return self.a.value

    def read_uv(self):
        # type: () -> int
        return int(self.a.value * self._uv_per_count)


def adc(name):
    # type: (str) -> ADC
    key = _key("adc", name)
    o = _made.get(key)
    if isinstance(o, ADC):
        return o
    o = _made[key] = ADC(analogio.AnalogIn(pin(name)))
    return o


class UART:
    """machine.UART's non-blocking methods on a busio.UART created with timeout=0."""

    def __init__(self, u):
        # type: (busio.UART) -> None
        self.u = u

    def any(self):
        # type: () -> int
        return self.u.in_waiting

    def read(self, n=None):
        # type: (int | None) -> bytes | None
        return self.u.read(n)

    def readinto(self, buf):
        # type: (bytearray) -> int | None
        return self.u.readinto(buf)

    def write(self, buf):
        # type: (bytes | bytearray) -> int | None
        return self.u.write(buf)


def uart(uart_id, cfg):
    # type: (int, dict[str, object]) -> UART
    tx = cfg.get("tx")
    rx = cfg.get("rx")
    key = _key("uart", str(tx), str(rx))
    o = _made.get(key)
    if isinstance(o, UART):
        return o
    u = busio.UART(pin(str(tx)) if tx else None, pin(str(rx)) if rx else None, baudrate=9600, bits=8,
                   stop=1, timeout=0)
    o = _made[key] = UART(u)
    return o


def onewire(name):
    # type: (str) -> object
    raise OSError(_ENODEV)  # no 1-Wire on the CircuitPython port (boards refuse ds18b20)


# ---- radio ------------------------------------------------------------------------------------------
class ESPNow:
    """MicroPython's ESPNow methods the link uses (send, any, irecv, recv, add_peer, del_peer,
    peer_count, peers_table) on CircuitPython's espnow.ESPNow. CircuitPython's send() does not wait for
    the MAC-layer acknowledgement, so send() answers True when the frame was queued; the link's own
    ACKs and retries make delivery reliable either way."""

    def __init__(self, e):
        # type: (espnow.ESPNow) -> None
        self.e = e
        self.peers = {}  # type: dict[bytes, espnow.Peer]
        self.peers_table = {}  # type: dict[bytes, list[int]]

    def active(self, flag=None):
        # type: (bool | None) -> bool
        return True

    def add_peer(self, mac, lmk=None, channel=0, ifidx=0, encrypt=None):
        # type: (bytes, bytes | None, int, int, bool | None) -> None
        mac = bytes(mac)
        if mac in self.peers:
            raise OSError(-0x3007, "ESP_ERR_ESPNOW_EXIST")
        enc = (lmk is not None) if encrypt is None else bool(encrypt)
        p = espnow.Peer(mac, lmk=lmk, channel=channel, interface=ifidx, encrypted=enc)
        self.e.peers.append(p)
        self.peers[mac] = p

    def del_peer(self, mac):
        # type: (bytes) -> None
        p = self.peers.pop(bytes(mac), None)
        if p is None:
            raise OSError(-0x3005, "ESP_ERR_ESPNOW_NOT_FOUND")
        self.e.peers.remove(p)

    def peer_count(self):
        # type: () -> tuple[int, int]
        return len(self.peers), sum(1 for p in self.peers.values() if p.encrypted)

    def send(self, mac, msg=None, sync=True):
        # type: (bytes | None, bytes | bytearray | None, bool) -> bool
        if msg is None:
            self.e.send(mac or b"")
            return True
        p = self.peers.get(bytes(mac)) if mac is not None else None
        if p is None:
            raise OSError(-0x3005, "ESP_ERR_ESPNOW_NOT_FOUND")
        self.e.send(msg, p)
        return True

    def any(self):
        # type: () -> bool
        return bool(self.e)

    def irecv(self, timeout_ms=None):
        # type: (int | None) -> list[bytes | None]
        pkt = self.e.read()
        if pkt is None:
            return [None, None]
        mac = bytes(pkt.mac)  # type: ignore[arg-type]  # ReadableBuffer: every member is a buffer
        self.peers_table[mac] = [pkt.rssi, pkt.time]
        return [mac, bytes(pkt.msg)]  # type: ignore[arg-type]  # ReadableBuffer: every member is a buffer

    recv = irecv


class WLAN:
    """network.WLAN's config(mac / channel) for the link: CircuitPython has no channel setter for a station
    that is not connected; starting (and stopping) an access point on the channel moves the radio there,
    and ESP-NOW follows it."""

    def __init__(self, channel=1):
        # type: (int) -> None
        self.channel = 0
        self.set_channel(channel)

    def set_channel(self, ch):
        # type: (int) -> None
        if ch == self.channel:
            return
        wifi.radio.start_ap("fieldlink", channel=ch)
        wifi.radio.stop_ap()
        self.channel = ch

    def config(self, *args, **kw):
        # type: (str, int) -> object
        if args:
            if args[0] == "mac":
                return bytes(wifi.radio.mac_address)  # type: ignore[arg-type]  # ReadableBuffer: every member is a buffer
            if args[0] == "channel":
                return self.channel
            raise ValueError("unknown config param")
        if "channel" in kw:
            self.set_channel(int(kw["channel"]))
        return None

    def active(self, flag=None):
        # type: (bool | None) -> bool
        return wifi.radio.enabled

    def disconnect(self):
        # type: () -> None
        pass


def radio(cfg):
    # type: (dict[str, object]) -> tuple[WLAN, ESPNow, bytes]
    made = _made.get(_key("radio"))
    if isinstance(made, tuple):  # ESPNow is a singleton: a rebuilt role gets the same radio
        return made
    wifi.radio.enabled = True
    opts = cfg.get("options")
    ch = opts.get("channel", 1) if isinstance(opts, dict) else 1
    mac = bytes(wifi.radio.mac_address)  # type: ignore[arg-type]  # ReadableBuffer: every member is a buffer
    parts = (WLAN(int(ch)), ESPNow(espnow.ESPNow()), mac)
    _made[_key("radio")] = parts
    return parts


# ---- supervision, sleep, reset ----------------------------------------------------------------------
class WDT:
    def __init__(self, ms):
        # type: (int) -> None
        import watchdog
        w = microcontroller.watchdog
        if w is None:
            raise OSError(_ENODEV)
        w.timeout = ms / 1000
        w.mode = watchdog.WatchDogMode.RESET
        self.w = w

    def feed(self):
        # type: () -> None
        self.w.feed()


def wdt(ms):
    # type: (int) -> WDT | None
    try:
        return WDT(ms)
    except (OSError, ValueError, RuntimeError):
        return None


class RTCMemory:
    """machine.RTC().memory([data]) on alarm.sleep_memory (kept over deep sleep): 2 length bytes + data."""

    def memory(self, data=None):
        # type: (bytes | None) -> bytes | None
        import alarm
        sm = alarm.sleep_memory
        if data is None:
            n = sm[0] | (sm[1] << 8)
            if n > len(sm) - 2:
                return b""
            return bytes(sm[2:2 + n])
        data = bytes(data)
        if len(data) > len(sm) - 2:
            raise ValueError("buffer too long")
        sm[2:2 + len(data)] = data
        sm[0] = len(data) & 0xFF
        sm[1] = len(data) >> 8
        return None


def rtc():
    # type: () -> RTCMemory
    return RTCMemory()


def woke_from_deepsleep():
    # type: () -> bool
    import alarm
    return alarm.wake_alarm is not None


def _deepsleep(ms):
    # type: (int) -> None
    import time

    import alarm
    alarm.exit_and_deep_sleep_until_alarms(alarm.time.TimeAlarm(monotonic_time=time.monotonic() + ms / 1000))


def deepsleep_fn():
    # type: () -> object
    return _deepsleep


def reset_fn():
    # type: () -> object
    return microcontroller.reset
