"""The virtual board's launcher files: the board TOML's `espnow_v2` option reaches the sim through
sim_board.json (never the device's board.json), with name and chip for os.uname()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fieldlink_host.boards import load_board, load_board_file
from fieldlink_host.errors import FieldlinkError
from fieldlink_host.virtual import BoardFlash, VirtualBoard, prepare_board_dir

ROOT = Path(__file__).resolve().parents[2]


def _toml(tmp: Path, extra: str) -> Path:
    text = (ROOT / "boards" / "sim-node.toml").read_text().replace("virtual = true", "virtual = true\n" + extra)
    p = tmp / "b.toml"
    p.write_text(text)
    return p


def test_espnow_v2_option(tmp_path: Path) -> None:
    assert load_board("sim-node").espnow_v2 is False  # default: ESP-NOW v1
    assert load_board_file(_toml(tmp_path, "espnow_v2 = true")).espnow_v2 is True
    with pytest.raises(FieldlinkError, match="espnow_v2"):
        load_board_file(_toml(tmp_path, 'espnow_v2 = "yes"'))


def test_prepare_board_dir_writes_sim_files(tmp_path: Path) -> None:
    name, chip, v2 = prepare_board_dir(tmp_path / "d", str(_toml(tmp_path, "espnow_v2 = true")))
    assert (name, chip, v2) == ("sim-node", "esp32s3", True)
    assert json.loads((tmp_path / "d" / "sim_board.json").read_text()) == \
        {"name": "sim-node", "chip": "esp32s3", "espnow_v2": True}
    parts = json.loads((tmp_path / "d" / "partitions.json").read_text())
    vfs = [p for p in parts if p["name"] == "vfs"]
    assert len(vfs) == 1 and BoardFlash(tmp_path / "d").size == vfs[0]["size"]


def test_mapping_board_keeps_espnow_v2_out_of_board_json(tmp_path: Path) -> None:
    vb = VirtualBoard(tmp_path / "m", board={"name": "m1", "chip": "esp32c6", "role": "node", "espnow_v2": True})
    vb._prepare()
    assert "espnow_v2" not in json.loads((tmp_path / "m" / "board.json").read_text())
    assert json.loads((tmp_path / "m" / "sim_board.json").read_text())["espnow_v2"] is True


def test_board_flash_round_trip_and_unformatted(tmp_path: Path) -> None:
    f = BoardFlash(tmp_path / "x")
    assert f.files() == {}
    with pytest.raises(FieldlinkError, match="not formatted"):
        f.listdir()
    f.write({"/a.txt": "A", "d/b.bin": b"\x00\x01"})
    assert f.files() == {"a.txt": b"A", "d/b.bin": b"\x00\x01"}
    assert f.listdir() == ["a.txt", "d"] and len(f.image()) == f.size == 0x310000
