"""Partition table binary: checked byte for byte against a table dumped from a real ESP32-S3's flash
(esptool read_flash 0x8000 0xC00; published in the partforge notes), and round-tripped for every board."""

from __future__ import annotations

import hashlib

import pytest
from fieldlink_host.boards import Partition, list_boards
from fieldlink_host.errors import FieldlinkError
from fieldlink_host.parttable import decode, encode

# nvs data/nvs 0x9000 0x6000, phy_init data/phy 0xF000 0x1000, factory app/factory 0x10000 0x100000
REAL_S3_DUMP = bytes.fromhex("""
aa 50 01 02 00 90 00 00 00 60 00 00 6e 76 73 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
aa 50 01 01 00 f0 00 00 00 10 00 00 70 68 79 5f
69 6e 69 74 00 00 00 00 00 00 00 00 00 00 00 00
aa 50 00 00 00 00 01 00 00 00 10 00 66 61 63 74
6f 72 79 00 00 00 00 00 00 00 00 00 00 00 00 00
eb eb ff ff ff ff ff ff ff ff ff ff ff ff ff ff
f4 ad 4f 45 38 56 4b 5d 74 35 b6 2c 75 b6 95 24
""") + b"\xff" * (0xC00 - 128)


def test_real_dump_layout_is_self_consistent() -> None:
    assert len(REAL_S3_DUMP) == 0xC00
    assert hashlib.md5(REAL_S3_DUMP[:96]).digest() == REAL_S3_DUMP[0x70:0x80]


def test_encode_matches_real_dump() -> None:
    parts = [Partition("nvs", "data", "nvs", 0x9000, 0x6000), Partition("phy_init", "data", "phy", 0xF000, 0x1000),
             Partition("factory", "app", "factory", 0x10000, 0x100000)]
    assert encode(parts) == REAL_S3_DUMP


def test_decode_real_dump() -> None:
    e = decode(REAL_S3_DUMP)
    assert [(x.name, x.type_name, x.subtype_name, x.offset, x.size) for x in e] == [
        ("nvs", "data", "nvs", 0x9000, 0x6000), ("phy_init", "data", "phy", 0xF000, 0x1000),
        ("factory", "app", "factory", 0x10000, 0x100000)]


def test_md5_mismatch_detected() -> None:
    bad = bytearray(REAL_S3_DUMP)
    bad[4] ^= 1
    with pytest.raises(FieldlinkError, match="MD5"):
        decode(bytes(bad))


@pytest.mark.parametrize("board", list_boards(), ids=lambda b: b.name)
def test_round_trip_every_board(board: object) -> None:
    from fieldlink_host.boards import Board

    assert isinstance(board, Board)
    data = encode(board.partitions)
    got = decode(data)
    assert [(e.name, e.type_name, e.subtype_name, e.offset, e.size) for e in got] == [
        (p.name, p.type, p.subtype, p.offset, p.size) for p in board.partitions]


def test_ota_subtypes_and_label_limit() -> None:
    data = encode([Partition("ota_1", "app", "ota_1", 0x10000, 0x10000)])
    assert data[2:4] == bytes([0x00, 0x11])
    with pytest.raises(FieldlinkError, match="longer than 16"):
        encode([Partition("a" * 17, "data", "nvs", 0x9000, 0x1000)])
