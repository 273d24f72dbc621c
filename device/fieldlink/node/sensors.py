# Sensor manager: builds the drivers named in the board config's "sensors" list, schedules them by
# interval_ms and reads them without ever raising: a failed read gives a reading with valid=False, the
# error kind, and +1 on the sensor's counter (errors: crc, io, timeout, invalid). See docs/boards.md.
#
#   mgr = SensorManager(board_cfg)                 # buses built from board_cfg["i2c"] via machine.I2C
#   for name in mgr.due(now):                      # sensors whose interval has elapsed
#       r = mgr.read(name, now)                    # {"temperature": 21.3, ..., "valid": True, "error": None}
# Non-blocking use from asyncio: w = mgr.start(name, now); await asyncio.sleep_ms(w); r = mgr.collect(name, now)
from fieldlink.runtime.clock import ticks_add as _add, ticks_diff as _diff, ticks_ms as _ms

from fieldlink.drivers.base import CRCError, NotReady, sleep_ms as _sleep_ms

ERROR_KINDS = ("crc", "io", "timeout", "invalid")
ETIMEDOUT = 110
DEFAULT_INTERVAL_MS = 10000

QUANTITIES = {
    "sht4x": ("temperature", "relative_humidity"),
    "bh1750": ("lux",),
    "analog_lux": ("lux",),
    "mq135": ("co2",),
    "bme280": ("temperature", "pressure", "relative_humidity"),
    "ds18b20": ("temperature",),
    "pzem004t": ("voltage", "current", "power", "energy", "frequency", "power_factor", "alarm"),
    "synthetic": ("temperature", "relative_humidity", "lux"),
}


def error_kind(exc):
    """Map a driver exception to an error kind; "not_ready" is not an error (no counter)."""
    if isinstance(exc, CRCError):
        return "crc"
    if isinstance(exc, NotReady):
        return "not_ready"
    if isinstance(exc, OSError):
        code = getattr(exc, "errno", None)
        if code is None and exc.args:
            code = exc.args[0]
        return "timeout" if code == ETIMEDOUT else "io"
    return "invalid"


def _kw(cfg, keys):
    return {k: cfg[k] for k in keys if k in cfg}


class Sensor:
    def __init__(self, cfg, now):
        self.cfg = cfg
        self.name = cfg["name"]
        self.driver_name = cfg["driver"]
        self.quantities = QUANTITIES[self.driver_name]
        self.interval_ms = int(cfg.get("interval_ms", DEFAULT_INTERVAL_MS))
        self.next_ms = now
        self.enabled = True
        self.dev = None
        self.errors = {}
        for k in ERROR_KINDS:
            self.errors[k] = 0
        self.reads = 0
        self.failures = 0  # consecutive failed reads
        self.last = None
        self._pending = None  # error kind from start(), reported by collect()


class SensorManager:
    def __init__(self, board_cfg, buses=None, clock=None, i2c_factory=None, sleep_ms=None,
                 adc_factory=None, uart_factory=None, onewire_factory=None):
        """board_cfg: the device board dict (board.json). buses: {"i2c0": I2C, "uart1": UART} to use
        instead of building them; the factories build what is missing (defaults: machine / onewire)."""
        self.clock = clock or _ms
        self.sleep_ms = sleep_ms or _sleep_ms
        self.buses = dict(buses or {})
        self._i2c_cfg = {}
        for b in board_cfg.get("i2c", ()):
            self._i2c_cfg["i2c%d" % b["id"]] = b
        self._i2c_factory = i2c_factory or _machine_i2c
        self._adc_factory = adc_factory or _machine_adc
        self._uart_factory = uart_factory or _machine_uart
        self._ow_factory = onewire_factory or _onewire
        now = self.clock()
        self.sensors = {}
        self.order = []
        for cfg in board_cfg.get("sensors", ()):
            if cfg.get("driver") not in QUANTITIES:
                continue  # the host validates drivers; an unknown one is skipped, never fatal
            s = Sensor(cfg, now)
            self.sensors[s.name] = s
            self.order.append(s.name)

    # scheduling
    def due(self, now_ms=None):
        now = self.clock() if now_ms is None else now_ms
        return [n for n in self.order if self.sensors[n].enabled and _diff(now, self.sensors[n].next_ms) >= 0]

    def next_due_ms(self, now_ms=None):
        """Milliseconds until the next enabled sensor is due (0 if one is due now, -1 if none)."""
        now = self.clock() if now_ms is None else now_ms
        best = -1
        for n in self.order:
            s = self.sensors[n]
            if s.enabled:
                d = _diff(s.next_ms, now)
                d = 0 if d < 0 else d
                if best < 0 or d < best:
                    best = d
        return best

    def set_interval(self, name, ms, now_ms=None):
        s = self.sensors[name]
        s.interval_ms = int(ms)
        s.next_ms = _add(self.clock() if now_ms is None else now_ms, s.interval_ms)

    def enable(self, name, on=True):
        self.sensors[name].enabled = bool(on)

    def errors(self, name):
        return self.sensors[name].errors

    def driver(self, name):
        """The driver object (built on first use); None if it cannot be built right now."""
        s = self.sensors[name]
        if s.dev is None:
            try:
                s.dev = self._build(s)
            except Exception as e:  # noqa: BLE001 - recorded like a failed read
                self._count(s, error_kind(e))
        return s.dev

    # reading
    def start(self, name, now_ms=None):
        """Begin a measurement; returns ms to wait before collect() (0 when nothing to wait for)."""
        s = self.sensors[name]
        s._pending = None
        if not s.enabled:
            s._pending = "disabled"
            return 0
        if s.dev is None:
            try:
                s.dev = self._build(s)
            except Exception as e:  # noqa: BLE001
                s._pending = error_kind(e)
                return 0
        try:
            return s.dev.start()
        except Exception as e:  # noqa: BLE001
            s._pending = error_kind(e)
            return 0

    def collect(self, name, now_ms=None):
        """Finish the measurement begun by start(); returns a new reading dict, never raises."""
        s = self.sensors[name]
        now = self.clock() if now_ms is None else now_ms
        s.next_ms = _add(now, s.interval_ms)
        s.reads += 1
        kind = s._pending
        s._pending = None
        values = None
        if kind is None:
            try:
                values = s.dev.collect()
            except Exception as e:  # noqa: BLE001
                kind = error_kind(e)
        r = {}
        if values is None:
            for q in s.quantities:
                r[q] = None
            self._count(s, kind)
        else:
            for i in range(len(s.quantities)):
                r[s.quantities[i]] = values[i]
            s.failures = 0
        r["valid"] = values is not None
        r["error"] = kind
        s.last = r
        return r

    def read(self, name, now_ms=None):
        """Blocking read: start(), sleep the conversion time, collect()."""
        w = self.start(name, now_ms)
        if w > 0:
            self.sleep_ms(w)
        return self.collect(name, now_ms)

    def read_due(self, now_ms=None):
        """Read every due sensor; returns {name: reading}."""
        now = self.clock() if now_ms is None else now_ms
        out = {}
        for n in self.due(now):
            out[n] = self.read(n, now)
        return out

    def _count(self, s, kind):
        if kind in s.errors:
            s.errors[kind] += 1
            s.failures += 1

    # driver construction
    def _i2c(self, cfg):
        bus = cfg.get("bus", "i2c0")
        b = self.buses.get(bus)
        if b is None:
            bcfg = self._i2c_cfg.get(bus)
            if bcfg is None:
                raise OSError(19)  # ENODEV: no such bus on this board
            b = self.buses[bus] = self._i2c_factory(bcfg)
        return b

    def _uart(self, cfg):
        bus = cfg.get("bus", "uart1")
        b = self.buses.get(bus)
        if b is None:
            b = self.buses[bus] = self._uart_factory(int(bus[4:]), cfg)
        return b

    def _build(self, s):
        c = s.cfg
        d = s.driver_name
        if d == "sht4x":
            from fieldlink.drivers.sht4x import SHT4x
            return SHT4x(self._i2c(c), c.get("address", 0x44), **_kw(c, ("mode",)))
        if d == "bh1750":
            from fieldlink.drivers.bh1750 import BH1750
            return BH1750(self._i2c(c), c.get("address", 0x23), **_kw(c, ("mode", "mtreg", "continuous")))
        if d == "bme280":
            from fieldlink.drivers.bme280 import BME280
            return BME280(self._i2c(c), c.get("address", 0x76), **_kw(c, ("osrs_t", "osrs_p", "osrs_h")))
        if d == "analog_lux":
            from fieldlink.drivers.analog_lux import AnalogLux
            return AnalogLux(self._adc_factory(c["pin"]),
                             **_kw(c, ("curve", "r_load", "vcc", "r_fixed", "r10", "gamma", "full_scale")))
        if d == "mq135":
            from fieldlink.drivers.mq135 import MQ135
            kw = _kw(c, ("r0", "rl", "vc", "divider", "a", "b", "vref"))
            kw["warmup_ms"] = int(c.get("warmup_s", 180) * 1000)
            return MQ135(self._adc_factory(c["pin"]), clock=self.clock, **kw)
        if d == "ds18b20":
            from fieldlink.drivers.ds18b20 import DS18B20, rom_from_hex
            rom = rom_from_hex(c["rom"]) if c.get("rom") else None
            return DS18B20(self._ow_factory(c["pin"]), rom, c.get("resolution", 12))
        if d == "pzem004t":
            from fieldlink.drivers.pzem004t import PZEM004T
            return PZEM004T(self._uart(c), c.get("address", 0xF8), c.get("timeout_ms", 200))
        from fieldlink.drivers.synthetic import Synthetic
        kw = _kw(c, ("seed", "offset_ms", "t_mean", "t_amp", "rh_mean", "rh_amp", "lux_peak",
                     "noise_t", "noise_rh", "noise_lux"))
        if "period_s" in c:
            kw["period_ms"] = int(c["period_s"] * 1000)
        return Synthetic(clock=self.clock, **kw)


# Default bus factories: the hardware port (fieldlink.port: MicroPython machine.*, or CircuitPython
# busio/analogio objects with the same methods).
def _machine_i2c(bcfg):
    from fieldlink.port.active import port
    return port().i2c(bcfg)


def _machine_adc(pin):
    from fieldlink.port.active import port
    return port().adc(pin)


def _machine_uart(uart_id, cfg):
    from fieldlink.port.active import port
    return port().uart(uart_id, cfg)


def _onewire(pin):
    from fieldlink.port.active import port
    return port().onewire(pin)
