"""Board definitions: load and validate boards/*.toml, and produce the compact form sent to devices.

The format is specified in docs/boards.md. Every validation error names the file, the key and the reason.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fieldlink.node.sensors import QUANTITIES as _DEVICE_QUANTITIES
from fieldlink.relays import RESTORE as _DEVICE_RESTORE
from fieldlink.runtime.config import ROLES as _DEVICE_ROLES

from fieldlink_host.boards_cpy import RUNTIMES, resolve
from fieldlink_host.chips import CHIP_PINS, pin_problem
from fieldlink_host.errors import FieldlinkError
from fieldlink_host.fsio import load_toml, read_text
from fieldlink_host.paths import BOARDS_DIR

CHIPS: dict[str, str] = {"esp32s3": "xtensawin", "esp32c6": "rv32imc"}
#: where the second-stage bootloader sits in flash, per chip (esptool's defaults)
BOOTLOADER_OFFSET: dict[str, int] = {"esp32s3": 0x0, "esp32c6": 0x0}
PARTITION_TABLE_OFFSET = 0x8000
#: the device's own tables (fieldlink.runtime.config, fieldlink.relays, fieldlink.node.sensors): one source
ROLES: tuple[str, ...] = tuple(_DEVICE_ROLES)
RESTORE: tuple[str, ...] = tuple(_DEVICE_RESTORE)
SENSOR_DRIVERS: tuple[str, ...] = tuple(_DEVICE_QUANTITIES)
FLASH_SIZES = {"2MB": 2 << 20, "4MB": 4 << 20, "8MB": 8 << 20, "16MB": 16 << 20, "32MB": 32 << 20}
#: the keys of a board file's top level, [pins] and a relay (anything else is a typo: refused)
TOP_KEYS = frozenset({"board", "partitions", "pins", "i2c", "relays", "sensors", "options", "circuitpython"})
#: [pins] key -> pin use (for the strapping rule, docs/boards.md)
PIN_KEYS = {"status_led": "status_led", "button": "button", "hc595_data": "hc595", "hc595_clock": "hc595",
            "hc595_latch": "hc595", "hc595_oe": "hc595", "i2c_power": "i2c_power"}
RELAY_KEYS = frozenset({"name", "pin", "hc595_bit", "active", "restore", "max_on_s", "min_switch_ms", "interlock"})
I2C_DRIVERS = frozenset({"sht4x", "bh1750", "bme280"})
UART_DRIVERS = frozenset({"pzem004t"})
#: drivers that take a GPIO ``pin`` and what the pin is for
PIN_DRIVERS = {"analog_lux": "adc", "mq135": "adc", "ds18b20": "onewire"}
PSRAM = ("none", "quad", "octal")
NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
#: device options with a fixed type (fieldlink.main, node, gateway read them): type, min, max
OPTION_TYPES: dict[str, tuple[type, int, int]] = {
    **{k: (int, 0, 86_400_000) for k in (
        "sleep_ms", "wdt_ms", "batch_ms", "host_timeout_ms", "join_timeout_ms", "join_backoff_max_ms", "tick_ms",
        "awake_ms", "sleeper_awake_ms")},
    **{k: (int, 0, 7 * 86400) for k in ("heartbeat_s", "permit_join_s", "cmd_ttl_s", "time_broadcast_s")},
    **{k: (int, 1, 65535) for k in ("telemetry_batch", "ring_buffer", "uplink_window", "uplink_max_frame",
                                      "cmd_queue_per_node", "cmd_queue_total", "hb_every_wakes")},
    "net_id": (int, 0, 255), "channel": (int, 1, 14), "tz_offset_min": (int, -720, 840),
    "uplink_baud": (int, 300, 5_000_000), "pmk": (str, 32, 32), "channels": (list, 1, 14),
}
PART_TYPES = {"app": ("factory", "ota_0", "ota_1", "test"), "data": ("nvs", "ota", "phy", "fat", "spiffs", "littlefs")}


@dataclass(frozen=True)
class Partition:
    name: str
    type: str
    subtype: str
    offset: int
    size: int


@dataclass(frozen=True)
class Board:
    name: str
    path: Path
    chip: str
    arch: str
    role: str
    flash_size: int
    description: str = ""
    virtual: bool = False
    #: ESP-NOW v2 (ESP-IDF >= 5.4: 1470-byte frames) on the virtual board; default v1 (250 bytes)
    espnow_v2: bool = False
    partitions: tuple[Partition, ...] = ()
    pins: dict[str, int] = field(default_factory=dict)
    i2c: tuple[dict[str, Any], ...] = ()
    relays: tuple[dict[str, Any], ...] = ()
    sensors: tuple[dict[str, Any], ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    runtime: str = "micropython"
    circuitpython: dict[str, Any] = field(default_factory=dict)  # board_id, version, pins (boards_cpy)

    def partition(self, name: str) -> Partition:
        for p in self.partitions:
            if p.name == name:
                return p
        raise FieldlinkError(f"board has no partition named {name!r}", where=str(self.path))

    @property
    def filesystem(self) -> Partition:
        """The data partition that holds the MicroPython filesystem (named 'vfs' by MicroPython)."""
        return self.partition("vfs")

    @property
    def app_partitions(self) -> tuple[Partition, ...]:
        return tuple(p for p in self.partitions if p.type == "app")

    def sensor_names(self) -> list[str]:
        return [str(s["name"]) for s in self.sensors]

    def relay_names(self) -> list[str]:
        return [str(r["name"]) for r in self.relays]

    def device_config(self) -> dict[str, Any]:
        """The compact form the device reads (``/board.json``): no partitions, no descriptions."""
        return {
            "name": self.name,
            "chip": self.chip,
            "role": self.role,
            "pins": dict(self.pins),
            "i2c": [dict(b) for b in self.i2c],
            "relays": [dict(r) for r in self.relays],
            "sensors": [dict(s) for s in self.sensors],
            "options": dict(self.options),
        } | ({"runtime": self.runtime, "circuitpython": dict(self.circuitpython)}
             if self.runtime != "micropython" else {})

    def device_json(self) -> bytes:
        """Deterministic compact JSON of :meth:`device_config` (sorted keys, no spaces)."""
        return json.dumps(self.device_config(), sort_keys=True, separators=(",", ":")).encode()


def _need(table: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if key not in table:
        raise FieldlinkError(f"missing key {key!r}", where=where)
    value = table[key]
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        tname = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise FieldlinkError(f"key {key!r} must be {tname}, got {value!r}", where=where)
    return value


def _check_int(table: dict[str, Any], key: str, where: str, lo: int = 0, hi: int = 1 << 32) -> None:
    if key in table:
        v = table[key]
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise FieldlinkError(f"key {key!r} must be an integer in {lo}..{hi}, got {v!r}", where=where)


def _tables(data: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    """An array of tables (``[[key]]``), or FieldlinkError saying what it is instead."""
    v = data.get(key, [])
    if not isinstance(v, list) or not all(isinstance(t, dict) for t in v):
        raise FieldlinkError(f"{key} must be an array of tables ([[{key}]])", where=where)
    return v


def _name(table: dict[str, Any], where: str) -> str:
    name = _need(table, "name", str, where)
    if not NAME_RE.fullmatch(name):
        raise FieldlinkError(f"key 'name' must be 1-32 characters of A-Z a-z 0-9 _ - (rule: names), got {name!r}",
                             where=where)
    return str(name)


class _Pins:
    """Every GPIO a board uses, checked against the chip's map; one owner per pin."""

    def __init__(self, chip: str, psram: str) -> None:
        self.cp = CHIP_PINS[chip]
        self.psram = psram
        self.owner: dict[int, str] = {}

    def use(self, pin: Any, use: str, owner: str, where: str, shared: bool = False) -> None:
        if not isinstance(pin, int) or isinstance(pin, bool):
            raise FieldlinkError(f"{owner} must be a GPIO number (integer), got {pin!r}", where=where)
        why = pin_problem(self.cp, pin, use, self.psram)
        if why:
            raise FieldlinkError(f"{owner} = {pin}: {why}", where=where)
        prev = self.owner.get(pin)
        if prev is not None and not (shared and prev == owner):
            raise FieldlinkError(f"{owner} = {pin}: GPIO{pin} is already used by {prev} (rule: one use per pin)",
                                 where=where)
        self.owner[pin] = owner


def _check_options(options: dict[str, Any], where: str) -> None:
    for key, value in options.items():
        spec = OPTION_TYPES.get(key)
        if spec is None:
            continue  # app-defined options are passed through untouched
        typ, lo, hi = spec
        if typ is int:
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise FieldlinkError(f"option {key!r} must be an integer in {lo}..{hi}, got {value!r}", where=where)
        elif typ is str:
            if not isinstance(value, str) or not lo <= len(value) <= hi or (
                    key == "pmk" and not all(c in "0123456789abcdefABCDEF" for c in value)):
                raise FieldlinkError(f"option {key!r} must be {lo} hex digits, got {value!r}", where=where)
        elif typ is list:
            if (not isinstance(value, list) or not lo <= len(value) <= hi
                    or not all(isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= 14 for c in value)):
                raise FieldlinkError(f"option {key!r} must be a list of 1..14 Wi-Fi channels, got {value!r}",
                                     where=where)


def parse_board(data: dict[str, Any], path: Path, _circuitpython: bool = False) -> Board:
    """Validate a parsed board TOML document; raise FieldlinkError naming file, key and reason."""
    f = str(path)
    head = data.get("board")
    if not isinstance(head, dict):
        raise FieldlinkError("missing [board] table", where=f)
    w = f"{f}: [board]"
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise FieldlinkError(f"unknown table {unknown[0]!r} (known: {', '.join(sorted(TOP_KEYS))})", where=f)
    runtime = head.get("runtime", "micropython")
    if runtime not in RUNTIMES:
        raise FieldlinkError(f"key 'runtime' must be one of {', '.join(RUNTIMES)}, got {runtime!r}", where=w)
    if runtime == "circuitpython":  # pin names -> GPIO numbers for the checks below; the device keeps names
        numeric, cpy = resolve(data, path)
        nb = parse_board(numeric, path, _circuitpython=True)
        return dataclasses.replace(nb, runtime=runtime, circuitpython=cpy, pins=dict(data.get("pins", {})),
                                   i2c=tuple(dict(x) for x in data.get("i2c", [])),
                                   relays=tuple(dict(x) for x in data.get("relays", [])),
                                   sensors=tuple(dict(x) for x in data.get("sensors", [])))
    name = _name(head, w)
    chip = _need(head, "chip", str, w)
    if chip not in CHIPS:
        raise FieldlinkError(f"key 'chip' must be one of {', '.join(CHIPS)}, got {chip!r}", where=w)
    arch = head.get("arch", CHIPS[chip])
    if arch != CHIPS[chip]:
        raise FieldlinkError(f"key 'arch' must be {CHIPS[chip]!r} for {chip}, got {arch!r}", where=w)
    role = _need(head, "role", str, w)
    if role not in ROLES:
        raise FieldlinkError(f"key 'role' must be one of {', '.join(ROLES)}, got {role!r}", where=w)
    fs = _need(head, "flash_size", str, w)
    if fs not in FLASH_SIZES:
        raise FieldlinkError(f"key 'flash_size' must be one of {', '.join(FLASH_SIZES)}, got {fs!r}", where=w)
    flash_size = FLASH_SIZES[fs]
    for key, typ in (("description", str), ("virtual", bool), ("psram", str)):
        if key in head and not isinstance(head[key], typ):
            raise FieldlinkError(f"key {key!r} must be {typ.__name__}, got {head[key]!r}", where=w)
    psram = head.get("psram", "none")
    if psram not in PSRAM:
        raise FieldlinkError(f"key 'psram' must be one of {', '.join(PSRAM)}, got {psram!r}", where=w)
    used = _Pins(chip, psram)

    parts: list[Partition] = []
    end_prev = 0x9000  # bootloader + partition table occupy everything below 0x9000
    for i, p in enumerate(_tables(data, "partitions", f)):
        pw = f"{f}: partitions[{i}]"
        pname = _name(p, pw)
        ptype = _need(p, "type", str, pw)
        if ptype not in PART_TYPES:
            raise FieldlinkError(f"key 'type' must be app or data, got {ptype!r}", where=pw)
        sub = _need(p, "subtype", str, pw)
        if sub not in PART_TYPES[ptype]:
            raise FieldlinkError(f"key 'subtype' {sub!r} is not valid for type {ptype!r}", where=pw)
        off = _need(p, "offset", int, pw)
        size = _need(p, "size", int, pw)
        if off % 0x1000 or size % 0x1000 or size <= 0:
            raise FieldlinkError("offset and size must be positive multiples of 4096", where=pw)
        if ptype == "app" and off % 0x10000:
            raise FieldlinkError("app partitions must be 64 KiB aligned", where=pw)
        if off < end_prev:
            raise FieldlinkError(f"partition overlaps the previous one (starts at {off:#x} < {end_prev:#x})", where=pw)
        if off + size > flash_size:
            raise FieldlinkError(f"partition ends at {off + size:#x}, beyond flash size {flash_size:#x}", where=pw)
        end_prev = off + size
        parts.append(Partition(pname, ptype, sub, off, size))
    # CircuitPython owns its flash layout (docs/circuitpython.md): such a board may have no table
    if not parts and not _circuitpython:
        raise FieldlinkError("a board needs a partition table ([[partitions]] with an app and a 'vfs' partition)",
                             where=f"{f}: partitions")
    if parts and not any(p.type == "app" for p in parts):
        raise FieldlinkError("partition table has no app partition", where=f"{f}: partitions")
    if parts and not any(p.name == "vfs" and p.type == "data" for p in parts):
        raise FieldlinkError("partition table has no data partition named 'vfs' (the filesystem)",
                             where=f"{f}: partitions")
    names = [p.name for p in parts]
    if len(set(names)) != len(names):
        raise FieldlinkError("duplicate partition names", where=f"{f}: partitions")

    pins = data.get("pins", {})
    if not isinstance(pins, dict):
        raise FieldlinkError("[pins] must be a table", where=f)
    for k, v in pins.items():
        if k not in PIN_KEYS:
            raise FieldlinkError(f"unknown pin {k!r} (known: {', '.join(PIN_KEYS)})", where=f"{f}: [pins]")
        used.use(v, PIN_KEYS[k], f"pins.{k}", f"{f}: [pins]")

    i2c = _tables(data, "i2c", f)
    ids: set[int] = set()
    for i, b in enumerate(i2c):
        bw = f"{f}: i2c[{i}]"
        bid = _need(b, "id", int, bw)
        if bid not in used.cp.i2c_ids:
            raise FieldlinkError(f"key 'id' {bid} is not an I2C controller of {chip} "
                                 f"(ids: {', '.join(map(str, sorted(used.cp.i2c_ids)))})", where=bw)
        if bid in ids:
            raise FieldlinkError(f"duplicate I2C bus id {bid}", where=bw)
        ids.add(bid)
        used.use(_need(b, "scl", int, bw), "i2c", f"i2c[{i}].scl", bw)
        used.use(_need(b, "sda", int, bw), "i2c", f"i2c[{i}].sda", bw)
        _check_int(b, "freq", bw, 10_000, 1_000_000)
    buses = {f"i2c{b['id']}" for b in i2c}

    relays = _tables(data, "relays", f)
    rnames: set[str] = set()
    for i, r in enumerate(relays):
        rw = f"{f}: relays[{i}]"
        rname = _name(r, rw)
        if rname in rnames:
            raise FieldlinkError(f"duplicate relay name {rname!r}", where=rw)
        rnames.add(rname)
        if ("pin" in r) == ("hc595_bit" in r):
            raise FieldlinkError("a relay needs exactly one of 'pin' or 'hc595_bit'", where=rw)
        if "pin" in r:
            used.use(r["pin"], "relay", f"relays[{i}].pin", rw)
        _check_int(r, "hc595_bit", rw, 0, 31)
        if "hc595_bit" in r:
            if not all(k in pins for k in ("hc595_data", "hc595_clock", "hc595_latch")):
                raise FieldlinkError("hc595 relays need pins hc595_data, hc595_clock, hc595_latch", where=rw)
            hbits = [x.get("hc595_bit") for x in relays[:i]]
            if r["hc595_bit"] in hbits:
                raise FieldlinkError(f"hc595_bit {r['hc595_bit']} is already used by relays[{hbits.index(r['hc595_bit'])}]",
                                     where=rw)
        for key, allowed in (("active", ("high", "low")), ("restore", RESTORE)):
            if r.get(key, allowed[0]) not in allowed:
                raise FieldlinkError(f"key {key!r} must be one of {', '.join(allowed)}, got {r[key]!r}", where=rw)
        _check_int(r, "max_on_s", rw, 0, 7 * 86400)
        _check_int(r, "min_switch_ms", rw, 0, 3_600_000)
        if "interlock" in r and not isinstance(r["interlock"], str):
            raise FieldlinkError("key 'interlock' must be a string", where=rw)
        extra = sorted(set(r) - RELAY_KEYS)
        if extra:
            raise FieldlinkError(f"unknown key {extra[0]!r} (known: {', '.join(sorted(RELAY_KEYS))})", where=rw)

    sensors = _tables(data, "sensors", f)
    snames: set[str] = set()
    for i, s in enumerate(sensors):
        sw = f"{f}: sensors[{i}]"
        sname = _name(s, sw)
        if sname in snames or sname in rnames:
            raise FieldlinkError(f"duplicate name {sname!r}", where=sw)
        snames.add(sname)
        drv = _need(s, "driver", str, sw)
        if drv not in SENSOR_DRIVERS:
            raise FieldlinkError(f"unknown driver {drv!r} (known: {', '.join(SENSOR_DRIVERS)})", where=sw)
        bus = s.get("bus")
        if drv in I2C_DRIVERS:
            if not isinstance(bus, str) or bus not in buses:
                raise FieldlinkError(f"bus {bus!r} is not defined in [[i2c]] (driver {drv} needs an I2C bus "
                                     f"{'/'.join(sorted(buses)) or '(none defined)'})", where=sw)
        elif drv in UART_DRIVERS:
            uid = str(bus)[4:] if isinstance(bus, str) and bus.startswith("uart") else ""
            if not uid.isdigit() or int(uid) not in used.cp.uart_ids:
                raise FieldlinkError(f"bus {bus!r} must be one of "
                                     f"{', '.join(f'uart{n}' for n in sorted(used.cp.uart_ids))} for {drv}", where=sw)
            for k in ("tx", "rx"):
                if k in s:
                    used.use(s[k], "uart", f"sensors[{i}].{k}", sw, shared=True)
        elif bus is not None:
            raise FieldlinkError(f"driver {drv} takes no bus, got {bus!r}", where=sw)
        if drv in PIN_DRIVERS:
            if "pin" not in s:
                raise FieldlinkError(f"driver {drv} needs 'pin'", where=sw)
            used.use(s["pin"], PIN_DRIVERS[drv], f"sensors[{i}].pin", sw, shared=PIN_DRIVERS[drv] == "onewire")
        elif "pin" in s:
            raise FieldlinkError(f"driver {drv} takes no 'pin'", where=sw)
        _check_int(s, "address", sw, 0, 0x7F if drv in I2C_DRIVERS else 0xFF)
        _check_int(s, "interval_ms", sw, 100, 86_400_000)

    options = data.get("options", {})
    if not isinstance(options, dict):
        raise FieldlinkError("[options] must be a table", where=f)
    _check_options(options, f"{f}: [options]")

    return Board(
        name=name,
        path=path,
        chip=chip,
        arch=arch,
        role=role,
        flash_size=flash_size,
        description=str(head.get("description", "")),
        virtual=bool(head.get("virtual", False)),
        espnow_v2=_need(head, "espnow_v2", bool, w) if "espnow_v2" in head else False,
        partitions=tuple(parts),
        pins=dict(pins),
        i2c=tuple(dict(b) for b in i2c),
        relays=tuple(dict(r) for r in relays),
        sensors=tuple(dict(s) for s in sensors),
        options=dict(options),
    )


def load_board_file(path: str | Path) -> Board:
    p = Path(path)
    return parse_board(load_toml(read_text(p, "board file", limit=1 << 20), p), p)


def list_boards(directory: Path | None = None) -> list[Board]:
    d = directory or BOARDS_DIR
    return [load_board_file(p) for p in sorted(Path(d).glob("*.toml"))]


def load_board(name_or_path: str) -> Board:
    """A board by name (boards/NAME.toml) or by path to a TOML file."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        return load_board_file(p)
    candidate = BOARDS_DIR / f"{name_or_path}.toml"
    if not candidate.exists():
        known = ", ".join(sorted(x.stem for x in BOARDS_DIR.glob("*.toml")))
        raise FieldlinkError(f"unknown board {name_or_path!r} (known: {known})")
    return load_board_file(candidate)
