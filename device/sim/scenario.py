# Scenario value sources and scenario files for the virtual board.
#
# A source is a callable: src() -> value now; src.at(t) -> value at t seconds of scenario time.
# Scenario time = (host time - start) * speed, set with set_clock(); tests can pin it with
# set_clock(fixed=seconds).
#
# Scenario description (dict or JSON file):
# {"seed": 1, "speed": 1.0,
#  "boards": {"<board name or MAC or *>": {"sht.temperature": {"type": "daynight", "mean": 21,
#                  "amplitude": 4}, "sht.humidity": 55, "light.lux": {"type": "csv", "path": "l.csv",
#                  "column": "lux"}, "air.volts": 0.8}},
#  "air": {"defaults": {"loss": 0.05}, "links": [{"src": "*", "dst": "aa:..", "loss": 0.3}]}}
# Keys are "<sensor name>.<attribute>" for the sensors in the board config; a bare number is Constant.
import math
import time

_clock = {"start": None, "speed": 1.0, "fixed": None}


def _host():
    return time.time()


def set_clock(speed=1.0, fixed=None):
    """Restart scenario time at 0 running `speed` times faster than real time, or pin it at `fixed`."""
    if speed <= 0:
        raise ValueError("speed must be > 0")
    _clock["start"] = _host()
    _clock["speed"] = float(speed)
    _clock["fixed"] = fixed


def now():
    if _clock["fixed"] is not None:
        return float(_clock["fixed"])
    if _clock["start"] is None:
        _clock["start"] = _host()
    return (_host() - _clock["start"]) * _clock["speed"]


class Source:
    def __call__(self):
        return self.at(now())

    def at(self, t):
        raise NotImplementedError


class Constant(Source):
    def __init__(self, v):
        self.v = v

    def at(self, t):
        return self.v


class _Rng:
    def __init__(self, seed):
        self.s = (int(seed) * 2654435761 + 0x9E3779B9) & 0xFFFFFFFF or 1

    def random(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return (x + 0.5) / 4294967296.0

    def gauss(self):
        u1 = self.random()
        u2 = self.random()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2 * math.pi * u2)


class DayNight(Source):
    """mean + amplitude * sin(2*pi*(t - phase)/period_s) + gaussian noise (std dev `noise`, seeded)."""

    def __init__(self, mean, amplitude, period_s=86400, noise=0, phase=0, seed=1):
        if period_s <= 0:
            raise ValueError("period_s must be > 0")
        if noise < 0:
            raise ValueError("noise must be >= 0")
        self.mean = float(mean)
        self.amplitude = float(amplitude)
        self.period = float(period_s)
        self.noise = float(noise)
        self.phase = float(phase)
        self.rng = _Rng(seed)

    def at(self, t):
        v = self.mean + self.amplitude * math.sin(2 * math.pi * (t - self.phase) / self.period)
        if self.noise:
            v += self.noise * self.rng.gauss()
        return v


class Csv(Source):
    """Step-interpolated column of a CSV file with a header row. The time column (seconds) must be
    non-decreasing. After the last row: loop=True starts again (period = last time + last step), else
    the last value holds."""

    def __init__(self, path, column, time_column="t", loop=True):
        import simfs
        with simfs.hopen(path) as f:
            lines = [ln.strip() for ln in f.read().split("\n") if ln.strip()]
        if len(lines) < 2:
            raise ValueError("%s: need a header and at least one row" % path)
        head = [h.strip() for h in lines[0].split(",")]
        for c in (column, time_column):
            if c not in head:
                raise ValueError("%s: no column %r (have %s)" % (path, c, ", ".join(head)))
        ci = head.index(column)
        ti = head.index(time_column)
        self.times = []
        self.values = []
        for n, ln in enumerate(lines[1:], 2):
            cells = ln.split(",")
            try:
                t = float(cells[ti])
                v = float(cells[ci])
            except (ValueError, IndexError):
                raise ValueError("%s:%d: bad row %r" % (path, n, ln))
            if self.times and t < self.times[-1]:
                raise ValueError("%s:%d: time goes backwards" % (path, n))
            self.times.append(t)
            self.values.append(v)
        self.loop = loop
        step = self.times[-1] - self.times[-2] if len(self.times) > 1 else 1.0
        self.period = self.times[-1] + (step if step > 0 else 1.0)

    def at(self, t):
        if self.loop and t >= self.period:
            t = t % self.period
        if t < self.times[0]:
            return self.values[0]
        lo, hi = 0, len(self.times) - 1
        while lo < hi:  # last index with times[i] <= t
            m = (lo + hi + 1) // 2
            if self.times[m] <= t:
                lo = m
            else:
                hi = m - 1
        return self.values[lo]


def source(spec, seed=1, base_dir=None):
    """A Source from a scenario value: a number, or {"type": "constant"|"daynight"|"csv", ...}."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return Constant(spec)
    if not isinstance(spec, dict):
        raise ValueError("scenario value must be a number or an object, got %r" % (spec,))
    kw = dict(spec)
    kind = kw.pop("type", None)
    try:
        if kind == "constant":
            return Constant(kw["value"])
        if kind == "daynight":
            kw.setdefault("seed", seed)
            return DayNight(**kw)
        if kind == "csv":
            path = kw.pop("path")
            if base_dir and not path.startswith("/"):
                path = base_dir + "/" + path
            return Csv(path, **kw)
    except (KeyError, TypeError) as e:
        raise ValueError("bad %s source %r: %s" % (kind, spec, e))
    raise ValueError("unknown source type %r" % (kind,))


class Scenario:
    def __init__(self, desc=None, base_dir=None):
        desc = desc or {}
        if not isinstance(desc, dict):
            raise ValueError("scenario must be a JSON object")
        for k in desc:
            if k not in ("seed", "speed", "boards", "air"):
                raise ValueError("unknown scenario key %r" % (k,))
        self.seed = int(desc.get("seed", 1))
        self.speed = float(desc.get("speed", 1.0))
        self.air = desc.get("air", {})
        self.boards = {}
        for name, values in desc.get("boards", {}).items():
            if not isinstance(values, dict):
                raise ValueError("scenario boards.%s must be an object" % name)
            srcs = {}
            for key, spec in values.items():
                if "." not in key:
                    raise ValueError("scenario key %r must be '<sensor>.<attribute>'" % key)
                srcs[key] = source(spec, self.seed, base_dir)
            self.boards[name] = srcs

    def sources_for(self, name=None, mac=None):
        out = {}
        for key in ("*", mac, name):
            if key is not None and key in self.boards:
                out.update(self.boards[key])
        return out


def load(path_or_desc):
    if isinstance(path_or_desc, dict):
        return Scenario(path_or_desc)
    import json
    path = str(path_or_desc)
    try:
        import simfs
        with simfs.hopen(path) as f:
            desc = json.load(f)
    except OSError:
        raise ValueError("cannot read scenario file %s" % path)
    except ValueError:
        raise ValueError("%s: invalid JSON" % path)
    base = path.rsplit("/", 1)[0] if "/" in path else "."
    return Scenario(desc, base)


_DEFAULT_ADDR = {"sht4x": 0x44, "bh1750": 0x23, "bme280": 0x76}


def attach_board_sensors(config, scen=None, name=None, mac=None):
    """Attach fake chips / analog sources for the sensors in a board config (board.json form).

    I2C drivers sht4x, bh1750, bme280 get chips from chips.py; analog drivers (with "pin") get an ADC
    source "<name>.volts" (default 1.0 V). Other drivers: a module chips_<driver> with
    attach(sensor_config, sources) is used if present. Returns {sensor name: chip or source}."""
    import simboard
    srcs = scen.sources_for(name, mac) if scen is not None else {}
    out = {}
    for s in config.get("sensors", []):
        sname = s.get("name")
        drv = s.get("driver")
        mine = {}
        for k, v in srcs.items():
            if k.split(".", 1)[0] == sname:
                mine[k.split(".", 1)[1]] = v
        if drv in _DEFAULT_ADDR:
            import chips
            cls = {"sht4x": chips.SHT4x, "bh1750": chips.BH1750, "bme280": chips.BME280}[drv]
            chip = cls()
            for attr, src in mine.items():
                if not hasattr(chip, attr):
                    raise ValueError("sensor %s (%s) has no attribute %r" % (sname, drv, attr))
                setattr(chip, attr, src)
            bus = str(s.get("bus", "i2c0"))
            bus_id = int(bus[3:]) if bus.startswith("i2c") else 0
            simboard.attach_i2c(bus_id, s.get("address", _DEFAULT_ADDR[drv]), chip)
            out[sname] = chip
        elif "pin" in s and drv in ("analog_lux", "mq135", "synthetic"):
            src = mine.get("volts", Constant(1.0))
            pin = s["pin"]
            if isinstance(pin, str):  # a CircuitPython pin name: its GPIO from the board's pin table
                pin = ((config.get("circuitpython") or {}).get("pins") or {})[pin]
            simboard.attach_adc(pin, src)
            out[sname] = src
        else:
            try:
                mod = __import__("chips_" + str(drv))
            except ImportError:
                continue
            if hasattr(mod, "attach"):
                out[sname] = mod.attach(s, mine)
    return out
