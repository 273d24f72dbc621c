"""Board definitions: load and validate boards/*.toml, and produce the compact form sent to devices.

The format is specified in docs/boards.md. Every validation error names the file, the key and the reason.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fieldlink.node.sensors import QUANTITIES as _DEVICE_QUANTITIES
from fieldlink.relays import RESTORE as _DEVICE_RESTORE
from fieldlink.runtime.config import ROLES as _DEVICE_ROLES

from fieldlink_host.errors import FieldlinkError
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
        }

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


def parse_board(data: dict[str, Any], path: Path) -> Board:
    """Validate a parsed board TOML document; raise FieldlinkError naming file, key and reason."""
    f = str(path)
    head = data.get("board")
    if not isinstance(head, dict):
        raise FieldlinkError("missing [board] table", where=f)
    w = f"{f}: [board]"
    name = _need(head, "name", str, w)
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

    parts: list[Partition] = []
    end_prev = 0x9000  # bootloader + partition table occupy everything below 0x9000
    for i, p in enumerate(data.get("partitions", [])):
        pw = f"{f}: partitions[{i}]"
        pname = _need(p, "name", str, pw)
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
    if parts and not any(p.type == "app" for p in parts):
        raise FieldlinkError("partition table has no app partition", where=f"{f}: partitions")
    names = [p.name for p in parts]
    if len(set(names)) != len(names):
        raise FieldlinkError("duplicate partition names", where=f"{f}: partitions")

    pins = data.get("pins", {})
    if not isinstance(pins, dict):
        raise FieldlinkError("[pins] must be a table", where=f)
    for k in pins:
        _check_int(pins, k, f"{f}: [pins]", 0, 48)

    i2c = data.get("i2c", [])
    for i, b in enumerate(i2c):
        bw = f"{f}: i2c[{i}]"
        _need(b, "id", int, bw)
        _need(b, "scl", int, bw)
        _need(b, "sda", int, bw)
        _check_int(b, "freq", bw, 10_000, 1_000_000)
    buses = {f"i2c{b['id']}" for b in i2c}

    relays = data.get("relays", [])
    rnames: set[str] = set()
    for i, r in enumerate(relays):
        rw = f"{f}: relays[{i}]"
        rname = _need(r, "name", str, rw)
        if rname in rnames:
            raise FieldlinkError(f"duplicate relay name {rname!r}", where=rw)
        rnames.add(rname)
        if ("pin" in r) == ("hc595_bit" in r):
            raise FieldlinkError("a relay needs exactly one of 'pin' or 'hc595_bit'", where=rw)
        _check_int(r, "pin", rw, 0, 48)
        _check_int(r, "hc595_bit", rw, 0, 31)
        if "hc595_bit" in r and not all(k in pins for k in ("hc595_data", "hc595_clock", "hc595_latch")):
            raise FieldlinkError("hc595 relays need pins hc595_data, hc595_clock, hc595_latch", where=rw)
        if r.get("active", "high") not in ("high", "low"):
            raise FieldlinkError(f"key 'active' must be high or low, got {r['active']!r}", where=rw)
        if r.get("restore", "off") not in RESTORE:
            raise FieldlinkError(f"key 'restore' must be one of {', '.join(RESTORE)}, got {r['restore']!r}", where=rw)
        _check_int(r, "max_on_s", rw, 0, 7 * 86400)
        _check_int(r, "min_switch_ms", rw, 0, 3_600_000)
        if "interlock" in r and not isinstance(r["interlock"], str):
            raise FieldlinkError("key 'interlock' must be a string", where=rw)

    sensors = data.get("sensors", [])
    snames: set[str] = set()
    for i, s in enumerate(sensors):
        sw = f"{f}: sensors[{i}]"
        sname = _need(s, "name", str, sw)
        if sname in snames or sname in rnames:
            raise FieldlinkError(f"duplicate name {sname!r}", where=sw)
        snames.add(sname)
        drv = _need(s, "driver", str, sw)
        if drv not in SENSOR_DRIVERS:
            raise FieldlinkError(f"unknown driver {drv!r} (known: {', '.join(SENSOR_DRIVERS)})", where=sw)
        if "bus" in s and s["bus"] not in buses and not str(s["bus"]).startswith("uart"):
            raise FieldlinkError(f"bus {s['bus']!r} is not defined in [[i2c]]", where=sw)
        _check_int(s, "address", sw, 0, 0x7F)
        _check_int(s, "interval_ms", sw, 100, 86_400_000)

    options = data.get("options", {})
    if not isinstance(options, dict):
        raise FieldlinkError("[options] must be a table", where=f)

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
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise FieldlinkError(f"cannot read board file: {exc.strerror}", where=str(p)) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FieldlinkError(f"invalid TOML: {exc}", where=str(p)) from exc
    return parse_board(data, p)


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
