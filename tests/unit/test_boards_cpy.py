"""CircuitPython board definitions: runtime key, pin names, [circuitpython] table (docs/boards.md)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fieldlink_host.boards import list_boards, load_board, load_board_file
from fieldlink_host.errors import FieldlinkError

FEATHER = "adafruit-feather-esp32s3"

BASE = """
[board]
name = "cp"
chip = "esp32s3"
role = "node"
runtime = "circuitpython"
flash_size = "4MB"

[circuitpython]
board_id = "my_board"
version = 9

[circuitpython.pins]
SCL = 4
SDA = 3
D5 = 5
A0 = 18
A5 = 8
LED = 13

[pins]
status_led = "LED"

[[i2c]]
id = 0
scl = "SCL"
sda = "SDA"

[[relays]]
name = "fan"
pin = "D5"

[[sensors]]
name = "sht"
driver = "sht4x"
bus = "i2c0"

[[sensors]]
name = "lux"
driver = "analog_lux"
pin = "A5"
"""


def _load(tmp_path: Path, text: str) -> object:
    p = tmp_path / "b.toml"
    p.write_text(text)
    return load_board_file(p)


def test_shipped_feather_matches_circuitpythons_board_definition() -> None:
    """The pin table in the TOML against CircuitPython's own board definition (circuitpython-stubs)."""
    import board_definitions

    b = load_board(FEATHER)
    assert b.runtime == "circuitpython" and b.role == "node" and not b.partitions
    stub = Path(board_definitions.__path__[0]) / b.circuitpython["board_id"] / "__init__.pyi"
    upstream = {m.group(1): int(m.group(2)) for m in
                re.finditer(r"^(\w+): microcontroller\.Pin\s+# GPIO(\d+)$", stub.read_text(), re.M)}
    assert len(upstream) > 30
    assert b.circuitpython["pins"] == upstream
    assert any(x.name == FEATHER for x in list_boards())


def test_device_config_keeps_pin_names(tmp_path: Path) -> None:
    b = _load(tmp_path, BASE)
    cfg = json.loads(b.device_json())  # type: ignore[attr-defined]
    assert cfg["runtime"] == "circuitpython"
    assert cfg["circuitpython"] == {"board_id": "my_board", "version": 9,
                                    "pins": {"A0": 18, "A5": 8, "D5": 5, "LED": 13, "SCL": 4, "SDA": 3}}
    assert cfg["i2c"] == [{"id": 0, "scl": "SCL", "sda": "SDA"}]
    assert cfg["relays"][0]["pin"] == "D5" and cfg["sensors"][1]["pin"] == "A5"
    assert cfg["pins"] == {"status_led": "LED"}


def test_micropython_boards_do_not_change(tmp_path: Path) -> None:
    cfg = json.loads(load_board("esp32-s3-devkitc-1").device_json())
    assert "runtime" not in cfg and "circuitpython" not in cfg


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ('runtime = "circuitpython"', 'runtime = "pyodide"', "key 'runtime' must be one of micropython, circuitpython"),
        ('pin = "D5"', "pin = 5", "relays[0]: key 'pin' must be a CircuitPython pin name"),
        ('pin = "D5"', 'pin = "D99"', "relays[0]: key 'pin': pin 'D99' is not in [circuitpython.pins]"),
        ('scl = "SCL"', 'scl = "GP5"', "i2c[0]: key 'scl'"),
        ('pin = "A5"', 'pin = "A7"', "sensors[1]: key 'pin'"),
        ('status_led = "LED"', 'status_led = "NEOPIXEL"', "[pins]: key 'status_led'"),
        ('role = "node"', 'role = "gateway"', "the gateway role needs MicroPython"),
        ('board_id = "my_board"', "board_id = 3", "key 'board_id'"),
        ("version = 9", "version = 8", "key 'version' must be one of 9, 10"),
        ("A0 = 18", "A0 = 49", "pin 'A0' must be a GPIO number 0..48"),
        ('driver = "analog_lux"', 'driver = "ds18b20"', "driver 'ds18b20' is not available on CircuitPython"),
        ("[circuitpython]\n", "[circuitpython]\nflavour = 1\n", "unknown key(s) flavour"),
        ('bus = "i2c0"', 'bus = "i2c1"', "bus 'i2c1' is not defined"),  # generic checks still apply
    ],
)
def test_validation_errors(tmp_path: Path, old: str, new: str, needle: str) -> None:
    assert old in BASE
    with pytest.raises(FieldlinkError) as e:
        _load(tmp_path, BASE.replace(old, new, 1))
    assert needle in str(e.value), str(e.value)
    assert str(tmp_path / "b.toml") in str(e.value)


def test_partitions_are_refused(tmp_path: Path) -> None:
    text = BASE + '\n[[partitions]]\nname = "nvs"\ntype = "data"\nsubtype = "nvs"\noffset = 0x9000\nsize = 0x5000\n'
    with pytest.raises(FieldlinkError, match="no \\[\\[partitions\\]\\]"):
        _load(tmp_path, text)


def test_missing_table(tmp_path: Path) -> None:
    text = BASE.split("[circuitpython]")[0] + "[pins]\n"
    with pytest.raises(FieldlinkError, match="missing \\[circuitpython\\] table"):
        _load(tmp_path, text)


def test_cli_check_reports_one_line(tmp_path: Path) -> None:
    p = tmp_path / "b.toml"
    p.write_text(BASE.replace('pin = "D5"', 'pin = "D9"'))
    proc = subprocess.run([sys.executable, "-m", "fieldlink_host", "boards", "check", str(p)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("fieldlink: error:") and "Traceback" not in proc.stderr
    assert "D9" in proc.stderr
