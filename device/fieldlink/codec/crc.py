# CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no input/output reflection, no final xor.
# Check value: crc16(b"123456789") == 0x29B1. (The same algorithm is called CRC-16/IBM-3740 or
# CRC-16/AUTOSAR in the CRC catalogue.)
#
# Table driven, MSB first: one 256-entry table (array('H'), 512 bytes) built once at import.
from array import array

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

POLY = const(0x1021)
INIT = const(0xFFFF)


def _make_table():
    t = array("H", bytes(512))
    for i in range(256):
        c = i << 8
        for _ in range(8):
            if c & 0x8000:
                c = ((c << 1) ^ POLY) & 0xFFFF
            else:
                c = (c << 1) & 0xFFFF
        t[i] = c
    return t


_TABLE = _make_table()


def crc16(data, crc=INIT):
    """CRC-16/CCITT-FALSE of a bytes-like object (bytes, bytearray, memoryview).

    Pass a previous result as `crc` to continue a running CRC over several chunks.
    """
    if isinstance(data, str):
        raise TypeError("crc16 needs a bytes-like object, not str")
    if not 0 <= crc <= 0xFFFF:
        raise ValueError("crc must be 0..0xFFFF")
    t = _TABLE
    for b in data:
        crc = ((crc & 0xFF) << 8) ^ t[(crc >> 8) ^ b]
    return crc
