"""C core codecs (built as a shared library, called with ctypes) == device Python code == PyPI `crc`
and `cobs`: CRC16, COBS, frames, and the streaming scanner fed in every possible cut, with garbage
between frames and oversize frames."""

from __future__ import annotations

import random

import crc as crclib
import pytest
from ccore import E_COBS_TRUNC, E_COBS_ZERO, E_CRC, E_SHORT, Core, CoreError
from cobs import cobs as cobslib
from fieldlink.codec import cobs as pycobs
from fieldlink.codec.crc import crc16 as pycrc16
from fieldlink.codec.serialframe import FrameDecoder, decode_frame, encode_frame
from fieldlink.errors import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REF_CRC = crclib.Calculator(crclib.Crc16.IBM_3740)  # CRC-16/CCITT-FALSE
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# bytes with many zeros and long non-zero runs (the COBS edge cases: 253, 254, 255 byte runs)
chunky = st.lists(st.one_of(st.binary(max_size=8), st.just(b"\x00"), st.integers(250, 520).map(lambda n: b"\x07" * n)),
                  max_size=6).map(b"".join)
data = st.one_of(st.binary(max_size=600), chunky)


def ref_frame(payload: bytes) -> bytes:
    return cobslib.encode(payload + int(REF_CRC.checksum(payload)).to_bytes(2, "big")) + b"\x00"


def test_crc_check_values(core: Core) -> None:
    # catalogue check values (CRC-16/IBM-3740, CRC-32/ISO-HDLC), independent of any implementation here
    assert core.crc16(b"123456789") == 0x29B1
    assert core.crc16(b"") == 0xFFFF
    assert core.crc32(b"123456789") == 0xCBF43926


@SETTINGS
@given(data, st.integers(0, 0xFFFF))
def test_crc16_equals_python_and_pypi(core: Core, b: bytes, init: int) -> None:
    assert core.crc16(b) == pycrc16(b) == REF_CRC.checksum(b)
    assert core.crc16(b, init) == pycrc16(b, init)


@SETTINGS
@given(data)
def test_cobs_equals_python_and_pypi(core: Core, b: bytes) -> None:
    enc = core.cobs_encode(b)
    assert enc == pycobs.encode(b) == cobslib.encode(b)
    assert len(enc) <= len(b) + len(b) // 254 + 1
    assert core.cobs_decode(enc) == pycobs.decode(enc) == b


@SETTINGS
@given(st.binary(max_size=300))
def test_cobs_decode_of_any_bytes_agrees(core: Core, b: bytes) -> None:
    try:
        ref: bytes | None = cobslib.decode(b)
    except cobslib.DecodeError:
        ref = None
    try:
        py: bytes | None = pycobs.decode(b)
    except DecodeError:
        py = None
    try:
        c: bytes | None = core.cobs_decode(b)
    except CoreError as e:
        assert e.code in (E_COBS_ZERO, E_COBS_TRUNC)
        c = None
    assert c == py
    if ref is not None and py is not None:
        assert ref == py


def test_cobs_edge_vectors(core: Core) -> None:
    # from the COBS paper / fieldlink.cobs docstring, written out by hand
    assert core.cobs_encode(b"") == b"\x01"
    assert core.cobs_encode(b"\x00") == b"\x01\x01"
    assert core.cobs_encode(b"\x11\x22\x00\x33") == b"\x03\x11\x22\x02\x33"
    run = bytes(range(1, 255))
    assert core.cobs_encode(run) == b"\xff" + run
    assert core.cobs_encode(run + b"\x01") == b"\xff" + run + b"\x02\x01"
    assert core.cobs_encode(run + b"\x00") == b"\xff" + run + b"\x01\x01"
    with pytest.raises(CoreError):
        core.cobs_decode(b"\x05\x11")


def test_frame_worked_example(core: Core) -> None:
    # docs/protocol.md "Worked example"
    payload = bytes.fromhex("82a17401a176cb403580000000000000")[:15]
    wire = bytes.fromhex("0b82a17401a176cb403580010101010330a100")
    assert core.encode_frame(payload) == wire
    assert core.decode_frame(wire[:-1]) == payload
    assert core.encode_frame(b"") == b"\x03\xff\xff\x00"


@SETTINGS
@given(data)
def test_frame_encode_decode_equals_python_and_pypi(core: Core, payload: bytes) -> None:
    wire = core.encode_frame(payload)
    assert wire == encode_frame(payload) == ref_frame(payload)
    assert core.decode_frame(wire[:-1]) == decode_frame(wire[:-1]) == payload


@SETTINGS
@given(st.binary(max_size=80))
def test_frame_decode_errors_agree(core: Core, body: bytes) -> None:
    try:
        py: bytes | str = decode_frame(body)
    except DecodeError as e:
        py = "crc" if "CRC" in str(e) else "framing"
    try:
        c: bytes | str = core.decode_frame(body)
    except CoreError as e:
        c = "crc" if e.code == E_CRC else "framing"
        assert e.code in (E_CRC, E_SHORT, E_COBS_ZERO, E_COBS_TRUNC)
    assert c == py


def _stream(rng: random.Random, max_frame: int) -> tuple[bytes, list[bytes]]:
    """Frames (some oversize, some empty payloads) with garbage and 0x00 runs between them."""
    parts: list[bytes] = []
    good: list[bytes] = []
    for _ in range(rng.randrange(1, 8)):
        kind = rng.randrange(6)
        if kind == 0:  # garbage, then a 0x00 that ends it
            parts.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))) + b"\x00")
        elif kind == 1:  # oversize payload
            parts.append(ref_frame(bytes(rng.randrange(256) for _ in range(max_frame + rng.randrange(1, 300)))))
        elif kind == 2:
            parts.append(b"\x00" * rng.randrange(1, 4))
        else:
            p = bytes(rng.randrange(256) for _ in range(rng.randrange(0, max_frame + 1)))
            parts.append(ref_frame(p))
            good.append(p)
    return b"".join(parts), good


def _feed_all(dec: object, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for c in chunks:
        out += dec.feed(c)  # type: ignore[attr-defined]
    return out


@pytest.mark.parametrize("max_frame", [1, 16, 300, 1024])
def test_scanner_every_cut_position_equals_python(core: Core, max_frame: int) -> None:
    rng = random.Random(max_frame)
    for _ in range(12):
        stream, _good = _stream(rng, max_frame)
        py = FrameDecoder(max_frame)
        want = _feed_all(py, [stream])
        stats = py.stats()
        for cut in range(len(stream) + 1):  # every cut into two chunks
            c = core.decoder(max_frame)
            assert _feed_all(c, [stream[:cut], stream[cut:]]) == want, cut
            assert c.stats() == stats, cut
        c = core.decoder(max_frame)  # one byte at a time
        assert _feed_all(c, [stream[i:i + 1] for i in range(len(stream))]) == want
        assert c.stats() == stats


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.binary(max_size=40), data.map(lambda p: ref_frame(p[:60])),
                          st.binary(min_size=30, max_size=90).map(ref_frame)), max_size=8),
       st.integers(1, 64), st.lists(st.integers(0, 400), max_size=6))
def test_scanner_random_streams_equal_python(core: Core, parts: list[bytes], max_frame: int,
                                             cuts: list[int]) -> None:
    stream = b"".join(parts)
    bounds = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *bounds], [*bounds, len(stream)], strict=True)]
    py = FrameDecoder(max_frame)
    c = core.decoder(max_frame)
    assert _feed_all(c, chunks) == _feed_all(py, chunks)
    assert c.stats() == py.stats()
    assert c.buffered() == py.buffered() <= py.capacity()


def test_scanner_oversize_body_is_dropped_without_buffering(core: Core) -> None:
    c = core.decoder(16)
    cap = 18 + 18 // 254 + 1  # docs/protocol.md: n + n // 254 + 1, n = 16 + 2
    assert c.feed(b"\x55" * (cap + 1)) == []
    assert c.buffered() == 0 and c.stats()["oversize"] == 1
    assert c.feed(b"\x55" * 500 + b"\x00" + ref_frame(b"ok")) == [b"ok"]
    assert c.stats() == {"frames": 1, "crc_errors": 0, "framing_errors": 0, "oversize": 1,
                         "bytes_in": cap + 1 + 501 + len(ref_frame(b"ok"))}
