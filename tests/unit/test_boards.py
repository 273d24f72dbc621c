"""Board definition loading and validation (docs/boards.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fieldlink_host.boards import FLASH_SIZES, list_boards, load_board, load_board_file
from fieldlink_host.errors import FieldlinkError

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = {"lilygo-t-relay-s3", "esp32-s3-devkitc-1", "esp32-c6-devkitc-1", "sim-node", "sim-gateway"}

MINIMAL = """
[board]
name = "x"
chip = "esp32c6"
role = "node"
flash_size = "4MB"

[[partitions]]
name = "nvs"
type = "data"
subtype = "nvs"
offset = 0x9000
size = 0x6000

[[partitions]]
name = "factory"
type = "app"
subtype = "factory"
offset = 0x10000
size = 0x1F0000

[[partitions]]
name = "vfs"
type = "data"
subtype = "fat"
offset = 0x200000
size = 0x200000
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "b.toml"
    p.write_text(text)
    return p


def test_shipped_boards_all_load() -> None:
    boards = {b.name: b for b in list_boards()}
    assert REQUIRED <= set(boards)
    relay = boards["lilygo-t-relay-s3"]
    assert len(relay.relays) == 6 and relay.chip == "esp32s3" and relay.arch == "xtensawin"
    gw = boards["esp32-c6-devkitc-1"]
    assert gw.role == "gateway" and gw.arch == "rv32imc"
    for b in boards.values():
        if b.runtime == "circuitpython":  # the CircuitPython firmware owns the flash layout
            assert not b.partitions
            continue
        # partitions are ordered, non-overlapping and inside flash
        ends = [(p.offset, p.offset + p.size) for p in b.partitions]
        assert all(e1 <= s2 for (_, e1), (s2, _) in zip(ends, ends[1:], strict=False))
        assert ends[-1][1] <= b.flash_size
        assert b.filesystem.subtype == "fat"


def test_minimal_board_and_device_json(tmp_path: Path) -> None:
    b = load_board_file(write(tmp_path, MINIMAL))
    assert b.arch == "rv32imc" and b.flash_size == FLASH_SIZES["4MB"] == 4 * 1024 * 1024
    cfg = json.loads(b.device_json())
    assert cfg == {"name": "x", "chip": "esp32c6", "role": "node", "pins": {}, "i2c": [], "relays": [],
                   "sensors": [], "options": {}}
    assert b.device_json() == b.device_json()  # deterministic
    assert b" " not in b.device_json()  # compact


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        (('chip = "esp32c6"', 'chip = "esp8266"'), "key 'chip'"),
        (('role = "node"', 'role = "sensor"'), "key 'role'"),
        (('flash_size = "4MB"', 'flash_size = "3MB"'), "key 'flash_size'"),
        (('name = "x"\n', ''), "missing key 'name'"),
        (("offset = 0x200000", "offset = 0x1F0000"), "overlaps"),
        (("size = 0x200000", "size = 0x300000"), "beyond flash size"),
        (("offset = 0x10000", "offset = 0x11000"), "64 KiB aligned"),
        (('subtype = "fat"', 'subtype = "ota_0"'), "not valid for type"),
    ],
)
def test_invalid_board_reports_file_key_reason(tmp_path: Path, patch: tuple[str, str], needle: str) -> None:
    p = write(tmp_path, MINIMAL.replace(*patch, 1))
    with pytest.raises(FieldlinkError) as ei:
        load_board_file(p)
    assert str(p) in str(ei.value) and needle in str(ei.value)


def test_relay_and_sensor_validation(tmp_path: Path) -> None:
    bad_relay = MINIMAL + '\n[[relays]]\nname = "r"\npin = 3\nactive = "mid"\n'
    with pytest.raises(FieldlinkError, match=r"relays\[0\].*key 'active'"):
        load_board_file(write(tmp_path, bad_relay))
    both = MINIMAL + '\n[[relays]]\nname = "r"\npin = 3\nhc595_bit = 1\n'
    with pytest.raises(FieldlinkError, match="exactly one of 'pin' or 'hc595_bit'"):
        load_board_file(write(tmp_path, both))
    bad_sensor = MINIMAL + '\n[[sensors]]\nname = "s"\ndriver = "dht99"\n'
    with pytest.raises(FieldlinkError, match=r"sensors\[0\].*unknown driver 'dht99'"):
        load_board_file(write(tmp_path, bad_sensor))
    bad_bus = MINIMAL + '\n[[sensors]]\nname = "s"\ndriver = "sht4x"\nbus = "i2c3"\naddress = 0x44\n'
    with pytest.raises(FieldlinkError, match="bus 'i2c3' is not defined"):
        load_board_file(write(tmp_path, bad_bus))


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FieldlinkError, match="invalid TOML"):
        load_board_file(write(tmp_path, "[board\n"))
    with pytest.raises(FieldlinkError, match="cannot read"):
        load_board_file(tmp_path / "nope.toml")
    with pytest.raises(FieldlinkError, match="unknown board 'nope'"):
        load_board("nope")


def test_cli_boards_check_one_line_error(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL.replace('role = "node"', 'role = "x"'))
    proc = subprocess.run([sys.executable, "-m", "fieldlink_host", "boards", "check", str(p)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("fieldlink: error:") and "Traceback" not in proc.stderr
    ok = subprocess.run([sys.executable, "-m", "fieldlink_host", "boards"], capture_output=True, text=True)
    assert ok.returncode == 0 and "lilygo-t-relay-s3" in ok.stdout
