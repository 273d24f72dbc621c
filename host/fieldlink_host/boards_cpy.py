"""CircuitPython board definitions (docs/boards.md "CircuitPython boards", docs/circuitpython.md).

A board with ``runtime = "circuitpython"`` names its pins the CircuitPython way (``"SCL"``, ``"D5"``, ``"A0"``:
the attributes of the ``board`` module) and lists them in ``[circuitpython.pins]`` with their GPIO numbers.
:func:`resolve` checks every pin reference against that table and returns a copy of the document with GPIO
numbers in their place, so that the generic validation (ranges, buses, relays, sensors) runs unchanged on
it; the device gets the names.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from fieldlink_host.errors import FieldlinkError

RUNTIMES = ("micropython", "circuitpython")
#: CircuitPython major versions a tree can be built for (the .mpy format changes with the major version)
CPY_VERSIONS = (9, 10)
#: drivers that need something CircuitPython's port layer does not provide (1-Wire: onewireio differs)
UNSUPPORTED_DRIVERS = ("ds18b20",)
#: sensor keys that hold pins
SENSOR_PIN_KEYS = ("pin", "tx", "rx")


def _pin(value: Any, table: dict[str, int], where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, str):
        raise FieldlinkError(f"key {key!r} must be a CircuitPython pin name (board.NAME), got {value!r}", where=where)
    if value not in table:
        raise FieldlinkError(f"key {key!r}: pin {value!r} is not in [circuitpython.pins] of this board", where=where)
    return table[value]


def resolve(data: dict[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate the CircuitPython parts of a board document. Returns (a copy with pin names replaced by
    GPIO numbers and without the runtime key, the device's ``circuitpython`` section)."""
    f = str(path)
    head = data["board"]
    w = f"{f}: [board]"
    if head.get("role") == "gateway":
        raise FieldlinkError("the gateway role needs MicroPython (its uplink is a raw USB CDC data "
                             "channel; docs/circuitpython.md); use runtime = \"micropython\"", where=w)
    if data.get("partitions"):
        raise FieldlinkError("a CircuitPython board has no [[partitions]]: the CircuitPython firmware "
                             "owns the flash layout", where=f"{f}: partitions")
    cpy = data.get("circuitpython")
    cw = f"{f}: [circuitpython]"
    if not isinstance(cpy, dict):
        raise FieldlinkError("missing [circuitpython] table (board_id, version, pins)", where=f)
    board_id = cpy.get("board_id")
    if not isinstance(board_id, str) or not board_id:
        raise FieldlinkError("key 'board_id' must be the CircuitPython board id (board.board_id)", where=cw)
    version = cpy.get("version", CPY_VERSIONS[0])
    if isinstance(version, bool) or version not in CPY_VERSIONS:
        raise FieldlinkError(f"key 'version' must be one of {', '.join(map(str, CPY_VERSIONS))} "
                             f"(CircuitPython major version), got {version!r}", where=cw)
    table = cpy.get("pins")
    if not isinstance(table, dict) or not table:
        raise FieldlinkError("missing [circuitpython.pins] (pin name = GPIO number)", where=cw)
    for name, gpio in table.items():
        if isinstance(gpio, bool) or not isinstance(gpio, int) or not 0 <= gpio <= 48:
            raise FieldlinkError(f"pin {name!r} must be a GPIO number 0..48, got {gpio!r}",
                                 where=f"{cw}.pins")
    unknown = set(cpy) - {"board_id", "version", "pins"}
    if unknown:
        raise FieldlinkError(f"unknown key(s) {', '.join(sorted(unknown))}", where=cw)

    out = copy.deepcopy(data)
    del out["circuitpython"]
    out["board"].pop("runtime", None)
    pins = out.get("pins", {})
    if isinstance(pins, dict):
        for k, v in list(pins.items()):
            pins[k] = _pin(v, table, f"{f}: [pins]", k)
    for i, b in enumerate(out.get("i2c", [])):
        for k in ("scl", "sda"):
            if k in b:
                b[k] = _pin(b[k], table, f"{f}: i2c[{i}]", k)
    for i, r in enumerate(out.get("relays", [])):
        if "pin" in r:
            r["pin"] = _pin(r["pin"], table, f"{f}: relays[{i}]", "pin")
    for i, s in enumerate(out.get("sensors", [])):
        sw = f"{f}: sensors[{i}]"
        if s.get("driver") in UNSUPPORTED_DRIVERS:
            raise FieldlinkError(f"driver {s['driver']!r} is not available on CircuitPython", where=sw)
        for k in SENSOR_PIN_KEYS:
            if k in s:
                s[k] = _pin(s[k], table, sw, k)
    device = {"board_id": board_id, "version": version, "pins": dict(sorted(table.items()))}
    return out, device
