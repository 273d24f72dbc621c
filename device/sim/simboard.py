# simboard: the state of the virtual board and the test/simulation side of the hardware.
#
# Device code uses machine/esp32/network/espnow; tests and the simulator use this module to attach fake
# chips and devices, drive input pins and analog sources, and to create several boards in one process.
#
#   simboard.attach_i2c(0, 0x44, chip)            hardware I2C(0); SoftI2C buses are ("soft", scl_pin)
#   simboard.attach_uart(1, dev)                  dev.uart_rx(data) -> answer bytes
#   simboard.uart_feed(1, b"...")                 push unsolicited bytes into UART(1)'s RX
#   simboard.attach_adc(4, lambda: 1.2)           pin 4 sees 1.2 V
#   simboard.set_pin(0, 0)                        drive input pin 0 low (fires Pin.irq handlers)
#   simboard.pin_level(1)                         level the MCU drives on pin 1 (relays)
#   b = simboard.new_board(mac=..., dir=...); simboard.select(b)   several boards in one process
#
# The board directory (vboard --dir) holds flash/<label>.bin, nvs.json and sim_state.json (RTC memory,
# reset cause, OTA boot state). Without a directory everything lives in memory.
import os
import sys

import simfs

try:
    import json
except ImportError:  # pragma: no cover
    import ujson as json

# Millisecond ticks for the sim's own timing (timers, watchdog, radio waits), shared by its modules.
try:
    from time import sleep_ms, ticks_diff, ticks_ms
except ImportError:  # CPython: monotonic milliseconds
    import time as _time

    def ticks_ms():
        return int(_time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def sleep_ms(ms):
        _time.sleep(ms / 1000)

# Exit codes the launcher (fieldlink_host.virtual) interprets. The authoritative reason is also written
# to sim_state.json ("pending") just before the process ends.
EXIT_HARD_RESET = 100
EXIT_WDT_RESET = 101
EXIT_DEEPSLEEP = 102
EXIT_SOFT_RESET = 103

# machine.reset_cause() values as on the ESP32 port
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
# machine.wake_reason() values (esp_sleep_wakeup_cause_t)
PIN_WAKE = 2
EXT0_WAKE = 2
EXT1_WAKE = 3
TIMER_WAKE = 4
TOUCHPAD_WAKE = 5
ULP_WAKE = 6

CAUSE_EXIT = {HARD_RESET: EXIT_HARD_RESET, WDT_RESET: EXIT_WDT_RESET, DEEPSLEEP_RESET: EXIT_DEEPSLEEP,
              SOFT_RESET: EXIT_SOFT_RESET}

IS_MPY = sys.implementation.name == "micropython"

# Default partition table (an 8 MB OTA layout) used when the board config has none.
DEFAULT_PARTITIONS = [
    {"name": "nvs", "type": "data", "subtype": "nvs", "offset": 0x9000, "size": 0x4000},
    {"name": "otadata", "type": "data", "subtype": "ota", "offset": 0xD000, "size": 0x2000},
    {"name": "phy_init", "type": "data", "subtype": "phy", "offset": 0xF000, "size": 0x1000},
    {"name": "ota_0", "type": "app", "subtype": "ota_0", "offset": 0x10000, "size": 0x270000},
    {"name": "ota_1", "type": "app", "subtype": "ota_1", "offset": 0x280000, "size": 0x270000},
    {"name": "vfs", "type": "data", "subtype": "fat", "offset": 0x4F0000, "size": 0x310000},
]


# The sim's own files are host files (simfs), never the board's filesystem.
_exists = simfs.hexists


def _mkdir(path):
    if not _exists(path):
        simfs.hmkdir(path)


def read_json(path, default=None):
    try:
        with simfs.hopen(path) as f:
            return json.load(f)
    except OSError:
        return default
    except ValueError:
        raise ValueError("%s: invalid JSON" % path)


def write_json(path, obj):
    tmp = path + ".tmp"
    with simfs.hopen(tmp, "w") as f:
        f.write(json.dumps(obj))
    simfs.hrename(tmp, path)


def parse_mac(mac):
    if isinstance(mac, (bytes, bytearray)):
        if len(mac) != 6:
            raise ValueError("MAC must be 6 bytes")
        return bytes(mac)
    h = str(mac).replace(":", "").replace("-", "")
    if len(h) != 12:
        raise ValueError("bad MAC %r" % (mac,))
    try:
        return bytes(int(h[i:i + 2], 16) for i in range(0, 12, 2))
    except ValueError:
        raise ValueError("bad MAC %r" % (mac,))


def _fnv(data):
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


class PinState:
    __slots__ = ("mode", "pull", "out", "ext", "handler", "trigger", "obj", "watchers", "pulses", "drive")

    def __init__(self):
        self.mode = None
        self.pull = None
        self.out = 0
        self.ext = None  # level driven from outside (simboard.set_pin), None = not driven
        self.handler = None
        self.trigger = 0
        self.obj = None
        self.watchers = []
        self.pulses = []
        self.drive = None


class Board:
    """All state of one virtual board. Device modules act on simboard.board() (the selected board)."""

    def __init__(self, mac=None, dir=None, config=None, partitions=None, air=None, chip=None):
        self.dir = dir
        if dir is not None:
            _mkdir(dir)
        if config is None and dir is not None:
            config = read_json(dir + "/board.json", None)
        self.config = config or {}
        if partitions is None:
            partitions = self.config.get("partitions")
        if partitions is None and dir is not None:
            partitions = read_json(dir + "/partitions.json", None)
        self.partitions = [dict(p) for p in (partitions or DEFAULT_PARTITIONS)]
        # sim_board.json (written by the launcher from the board TOML): name, chip, espnow_v2
        self.sim = (read_json(dir + "/sim_board.json", None) if dir is not None else None) or {}
        self.chip = chip or self.config.get("chip") or self.sim.get("chip") or "esp32s3"
        self.espnow_v2 = bool(self.sim.get("espnow_v2", self.config.get("espnow_v2", False)))
        self.state = read_json(dir + "/sim_state.json", {}) if dir is not None else {}
        if mac is None:
            mac = self.state.get("mac")
        if mac is None:
            seed = _fnv((dir or "fieldlink-sim").encode())
            mac = bytes([0x02, 0xF1]) + seed.to_bytes(4, "big")
        self.mac = parse_mac(mac)
        self.state["mac"] = ":".join("%02x" % b for b in self.mac)
        self.air = air if air is not None else simfs.getenv("FIELDLINK_AIR")
        self.medium = None  # set by use_loopback() or lazily from self.air
        self.radio = None
        self.channel = 1
        self.wlan = [None, None]  # per-interface state dicts (network.py)
        self.espnow = None  # espnow core (espnow.py)
        self.i2c = {}
        self.uart = {}
        self.uart_rx = {}
        self.adc = {}
        self.pins = {}
        self.reset_cause = PWRON_RESET
        self.wake_reason = 0
        self.freq = 160000000
        self.nvs_committed = None  # loaded lazily by esp32.NVS
        self.timers = []
        self.wdt = None
        self.pin_events = 0
        self.boot_ms = None

    # ---- persistence -------------------------------------------------------------------------------
    def save_state(self):
        if self.dir is not None:
            write_json(self.dir + "/sim_state.json", self.state)

    def path(self, name):
        if self.dir is None:
            return None
        return self.dir + "/" + name

    def boot(self):
        """Apply the reset that ended the previous process (or a power-on) and run the 'bootloader'."""
        pend = self.state.pop("pending", None)
        if pend:
            self.reset_cause = int(pend.get("cause", PWRON_RESET))
            self.wake_reason = int(pend.get("wake", 0))
        else:
            self.reset_cause = PWRON_RESET
            self.wake_reason = 0
            self.state.pop("rtc_mem", None)  # RTC RAM does not survive a power cycle
            self.state.pop("rtc_offset", None)
        self.state["boots"] = int(self.state.get("boots", 0)) + 1
        try:
            import esp32
        except ImportError:  # the CircuitPython virtual board hides esp32: no OTA slots to choose from
            esp32 = None
        if esp32 is not None:
            esp32._bootloader(self)
        self.save_state()

    def end(self, cause, sleep_ms=None, wake=0, from_thread=False):
        """End this board's process with a reset of kind `cause` (the launcher restarts it)."""
        self.state["pending"] = {"cause": cause, "wake": wake, "sleep_ms": sleep_ms}
        self.save_state()
        code = CAUSE_EXIT[cause]
        for t in list(self.timers):
            t.deinit()
        try:
            sys.stdout.flush()
        except AttributeError:
            pass
        if from_thread:
            _kill_process(code)
        raise SystemExit(code)

    # ---- pins --------------------------------------------------------------------------------------
    def pin(self, n):
        st = self.pins.get(n)
        if st is None:
            st = self.pins[n] = PinState()
        return st

    def level(self, n):
        st = self.pin(n)
        if st.mode == 1:  # OUT
            return st.out
        if st.mode == 2:  # OPEN_DRAIN
            if st.out == 0:
                return 0
            if st.ext is not None:
                return st.ext
            return 0 if st.pull == 2 else 1
        if st.ext is not None:
            return st.ext
        if st.pull == 1:  # PULL_UP
            return 1
        return 0


_current = [None]


def board():
    b = _current[0]
    if b is None:
        b = _current[0] = Board()
    return b


def select(b):
    """Make `b` the board that machine/esp32/network/espnow act on; returns the previous one."""
    prev = _current[0]
    _current[0] = b
    return prev


def new_board(mac=None, dir=None, config=None, partitions=None, air=None, chip=None, boot=True):
    """Create (and by default boot) a board without selecting it."""
    b = Board(mac=mac, dir=dir, config=config, partitions=partitions, air=air, chip=chip)
    if boot:
        b.boot()
    return b


def setup(dir=None, mac=None, config=None, partitions=None, air=None, chip=None):
    """Create, boot and select the process's board (vboard.py calls this)."""
    b = new_board(mac=mac, dir=dir, config=config, partitions=partitions, air=air, chip=chip)
    select(b)
    return b


def reset():
    """Forget all boards (tests): the next access creates a fresh in-memory board."""
    b = _current[0]
    if b is not None:
        for t in list(b.timers):
            t.deinit()
        if b.wdt is not None:
            b.wdt._stop()
        if b.radio is not None:
            b.radio.stop()
    _current[0] = None


def use_loopback(medium, b=None):
    """Put board `b` (default: selected) on an in-process LoopbackMedium instead of the UDP air."""
    (b or board()).medium = medium


# ---- I2C ------------------------------------------------------------------------------------------
def attach_i2c(bus, addr, chip):
    """Attach `chip` at 7-bit `addr` on `bus` (int id for machine.I2C, ("soft", scl_pin) for SoftI2C).

    The chip implements i2c_write(data: bytes) and i2c_read(n) -> bytes; a chip with a true `nack`
    attribute does not acknowledge its address (OSError(19), ENODEV, as on the ESP32)."""
    if not isinstance(addr, int) or not 0 <= addr <= 0x7F:
        raise ValueError("I2C address must be 0..127")
    if not hasattr(chip, "i2c_write") or not hasattr(chip, "i2c_read"):
        raise TypeError("chip must implement i2c_write(data) and i2c_read(n)")
    board().i2c.setdefault(_bus_key(bus), {})[addr] = chip


def detach_i2c(bus, addr):
    devs = board().i2c.get(_bus_key(bus), {})
    if addr not in devs:
        raise KeyError("no chip at 0x%02x on I2C bus %r" % (addr, bus))
    del devs[addr]


def i2c_chip(bus, addr):
    return board().i2c.get(_bus_key(bus), {}).get(addr)


def _bus_key(bus):
    if isinstance(bus, list):
        bus = tuple(bus)
    if isinstance(bus, tuple):
        if len(bus) != 2 or bus[0] != "soft":
            raise ValueError("SoftI2C bus key must be ('soft', scl_pin)")
        return ("soft", int(bus[1]))
    if not isinstance(bus, int):
        raise ValueError("I2C bus must be an int id or ('soft', scl_pin)")
    return bus


# ---- UART -----------------------------------------------------------------------------------------
def attach_uart(uart_id, dev):
    """Attach a device to UART(uart_id): dev.uart_rx(data) gets each MCU write, returns its answer."""
    if not hasattr(dev, "uart_rx"):
        raise TypeError("UART device must implement uart_rx(data) -> bytes")
    board().uart[int(uart_id)] = dev


def detach_uart(uart_id):
    board().uart.pop(int(uart_id), None)


def uart_feed(uart_id, data):
    """Queue bytes for the MCU to read from UART(uart_id) (unsolicited device output)."""
    board().uart_rx.setdefault(int(uart_id), bytearray()).extend(data)


# ---- analog / pins ---------------------------------------------------------------------------------
def attach_adc(pin, source):
    """Pin `pin` sees the voltage `source()` (volts; a number is accepted as a constant)."""
    if not callable(source):
        v = float(source)

        def source():
            return v
    board().adc[int(pin)] = source


def detach_adc(pin):
    board().adc.pop(int(pin), None)


def set_pin(pin, value):
    """Drive input pin `pin` to 0/1 from outside (None releases it); fires matching Pin.irq handlers."""
    b = board()
    st = b.pin(int(pin))
    old = b.level(int(pin))
    st.ext = None if value is None else (1 if value else 0)
    new = b.level(int(pin))
    if old != new:
        b.pin_events += 1
        trig = 2 if new else 1  # IRQ_RISING = 2, IRQ_FALLING = 1 (ESP32 port values)
        if st.handler is not None and (st.trigger & trig):
            st.handler(st.obj)


def pin_level(pin):
    """The level of `pin` as seen on the wire (what the MCU drives for an output)."""
    return board().level(int(pin))


def pin_mode(pin):
    return board().pin(int(pin)).mode


def watch_pin(pin, callback):
    """callback(pin, level) is called whenever the MCU changes the output level of `pin`."""
    board().pin(int(pin)).watchers.append(callback)


def queue_pulse(pin, width_us):
    """The next machine.time_pulse_us(pin, ...) returns width_us (a pulse the sim 'measured')."""
    board().pin(int(pin)).pulses.append(int(width_us))


def encryption_tag(pmk, lmk):
    """The 32-bit tag the air carries for an encrypted frame: both ends need the same PMK and LMK."""
    return _fnv(bytes(pmk) + bytes(lmk))


def _kill_process(code):
    """End the whole process from a non-main thread (WDT). CPython: os._exit(code). MicroPython has no
    _exit(): SIGKILL ourselves; sim_state.json already says why."""
    if hasattr(os, "_exit"):
        os._exit(code)
    simfs.kill_self(9)
    import time
    while True:
        time.sleep_ms(1000)
