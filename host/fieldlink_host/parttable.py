"""ESP-IDF partition table binary (the format of gen_esp32part.py, flashed at 0x8000).

Each entry is 32 bytes, little-endian: magic ``AA 50``, type u8, subtype u8, offset u32, size u32,
label char[16] (NUL-padded), flags u32. After the entries comes the MD5 record: ``EB EB`` + 14 x ``FF``
+ the 16-byte MD5 of all entry bytes. The table is padded with ``FF`` to 0xC00 bytes (3 KiB; the rest
of the 4 KiB sector is reserved for a secure-boot signature).
Reference: ESP-IDF "Partition Tables" guide and components/partition_table/gen_esp32part.py.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fieldlink_host.boards import Partition
from fieldlink_host.errors import FieldlinkError

ENTRY = struct.Struct("<2sBBLL16sL")
MAGIC = b"\xaa\x50"
MD5_MAGIC = b"\xeb\xeb" + b"\xff" * 14
MAX_LENGTH = 0xC00
TYPES = {"app": 0x00, "data": 0x01}
SUBTYPES: dict[str, dict[str, int]] = {
    "app": {"factory": 0x00, "test": 0x20, **{f"ota_{i}": 0x10 + i for i in range(16)}},
    "data": {"ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "nvs_keys": 0x04, "efuse": 0x05,
             "undefined": 0x06, "esphttpd": 0x80, "fat": 0x81, "spiffs": 0x82, "littlefs": 0x83},
}
FLAG_ENCRYPTED = 1 << 0


@dataclass(frozen=True)
class Entry:
    name: str
    type: int
    subtype: int
    offset: int
    size: int
    flags: int = 0

    @property
    def type_name(self) -> str:
        for k, v in TYPES.items():
            if v == self.type:
                return k
        return f"{self.type:#04x}"

    @property
    def subtype_name(self) -> str:
        for k, v in SUBTYPES.get(self.type_name, {}).items():
            if v == self.subtype:
                return k
        return f"{self.subtype:#04x}"


def entry_from_partition(p: Partition) -> Entry:
    if p.type not in TYPES or p.subtype not in SUBTYPES[p.type]:
        raise FieldlinkError(f"partition {p.name!r}: unknown type/subtype {p.type}/{p.subtype}")
    return Entry(p.name, TYPES[p.type], SUBTYPES[p.type][p.subtype], p.offset, p.size)


def encode(entries: Iterable[Entry | Partition], md5: bool = True) -> bytes:
    """The binary table, padded to 0xC00 bytes."""
    out = bytearray()
    for e in entries:
        ent = entry_from_partition(e) if isinstance(e, Partition) else e
        label = ent.name.encode("ascii")
        if len(label) > 16:
            raise FieldlinkError(f"partition label {ent.name!r} is longer than 16 bytes")
        out += ENTRY.pack(MAGIC, ent.type, ent.subtype, ent.offset, ent.size, label, ent.flags)
    if md5:
        out += MD5_MAGIC + hashlib.md5(bytes(out)).digest()
    if len(out) > MAX_LENGTH:
        raise FieldlinkError(f"partition table is {len(out)} bytes, more than {MAX_LENGTH:#x}")
    return bytes(out) + b"\xff" * (MAX_LENGTH - len(out))


def decode(data: bytes) -> list[Entry]:
    """Parse a binary table; checks the MD5 record when present. Raises FieldlinkError."""
    entries: list[Entry] = []
    for pos in range(0, min(len(data), MAX_LENGTH), 32):
        chunk = data[pos:pos + 32]
        if len(chunk) < 32:
            break
        if chunk[:2] == MAGIC:
            magic, t, st, off, size, label, flags = ENTRY.unpack(chunk)
            entries.append(Entry(label.rstrip(b"\x00").decode("ascii", "replace"), t, st, off, size, flags))
        elif chunk[:16] == MD5_MAGIC:
            if hashlib.md5(data[:pos]).digest() != chunk[16:]:
                raise FieldlinkError("partition table MD5 mismatch")
            return entries
        elif chunk == b"\xff" * 32:
            return entries
        else:
            raise FieldlinkError(f"invalid partition table entry at {pos:#x}")
    return entries


def find(entries: Sequence[Entry], *, name: str | None = None, type: int | None = None,
         subtype: int | None = None) -> Entry | None:
    for e in entries:
        if (name is None or e.name == name) and (type is None or e.type == type) and \
                (subtype is None or e.subtype == subtype):
            return e
    return None
