"""Cross-checks of the device wire codecs against the PyPI reference libraries (CPython only).

msgpack (msgpack.packb/unpackb), cobs (cobs.cobs.encode/decode) and crc (crc.Calculator) are
independent implementations; hypothesis drives random inputs through both sides.

Documented type set for byte-identical msgpack encoding: None, bool, int in [-2**63, 2**64-1],
float (float64), str, bytes, list/tuple (-> array), dict with str/int keys, nested up to MAX_DEPTH.
"""

from __future__ import annotations

import math
import random

import crc as crclib
import msgpack
import pytest
from cobs import cobs as cobslib
from fieldlink.codec import cobs, mpack
from fieldlink.codec.crc import crc16
from fieldlink.codec.serialframe import FrameDecoder, decode_frame, encode_frame
from fieldlink.errors import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _ccitt_false_config() -> crclib.Configuration:
    # crc v8 names CRC-16/CCITT-FALSE "IBM_3740" (older releases: "CCITT"); pick whichever preset has
    # poly 0x1021, init 0xFFFF, no reflection, no xorout.
    for name in ("CCITT", "IBM_3740"):
        cfg = getattr(crclib.Crc16, name, None)
        if cfg is None:
            continue
        c = cfg.value
        if (c.polynomial, c.init_value, c.final_xor_value, c.reverse_input, c.reverse_output) == (
                0x1021, 0xFFFF, 0, False, False):
            return cfg
    raise AssertionError("no CRC-16/CCITT-FALSE preset in the crc library")


REF_CRC = crclib.Calculator(_ccitt_false_config())


def ref_crc(data: bytes) -> int:
    return int(REF_CRC.checksum(bytes(data)))


def ref_frame(payload: bytes) -> bytes:
    return cobslib.encode(payload + ref_crc(payload).to_bytes(2, "big")) + b"\x00"


# ------------------------------------------------------------------------------------------ strategies

ints = st.one_of(
    st.integers(min_value=-(2 ** 63), max_value=2 ** 64 - 1),
    st.sampled_from([0, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 64 - 1,
                     -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 63)]),
)
floats = st.floats(allow_nan=False)
texts = st.one_of(st.text(max_size=40), st.text(max_size=300, alphabet="xyé€😀"))
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts, st.binary(max_size=300))
keys = st.one_of(st.text(max_size=10), st.integers(min_value=-(2 ** 63), max_value=2 ** 64 - 1))
objects = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=20),
        st.dictionaries(keys, children, max_size=20),
    ),
    max_leaves=60,
)


# ------------------------------------------------------------------------------------------ msgpack

@SETTINGS
@given(objects)
def test_packb_matches_msgpack(obj: object) -> None:
    ref = msgpack.packb(obj, use_bin_type=True, use_single_float=False)
    assert mpack.packb(obj) == ref
    assert mpack.unpackb(ref) == obj
    assert mpack.unpackb(mpack.packb(obj)) == obj


@settings(max_examples=100, deadline=None)
@given(st.lists(scalars, max_size=8).map(tuple))
def test_tuples_pack_as_arrays(t: tuple[object, ...]) -> None:
    assert mpack.packb(t) == msgpack.packb(t, use_bin_type=True)
    assert mpack.packb((t, [t])) == msgpack.packb((t, [t]), use_bin_type=True)
    assert mpack.unpackb(mpack.packb(t)) == list(t)


def test_long_containers_and_strings_match_msgpack() -> None:
    for obj in (list(range(70000)), {str(i): i for i in range(70000)}, "z" * 70000, b"\x01" * 70000,
                "é" * 40000, [b""] * 65536, list(range(65535))):
        ref = msgpack.packb(obj, use_bin_type=True)
        assert mpack.packb(obj) == ref
        assert mpack.unpackb(ref) == obj


@SETTINGS
@given(st.floats(width=32, allow_nan=False))
def test_single_float_matches_msgpack(x: float) -> None:
    ref = msgpack.packb(x, use_single_float=True)
    assert mpack.packb(x, use_single_float=True) == ref
    assert mpack.unpackb(ref) == x


@SETTINGS
@given(st.floats(allow_nan=True))
def test_nan_and_special_floats_bitwise(x: float) -> None:
    ref = msgpack.packb(x)
    assert mpack.packb(x) == ref
    y = mpack.unpackb(ref)
    assert (math.isnan(x) and math.isnan(y)) or x == y


def _same(a: object, b: object) -> bool:
    # equality that treats NaN == NaN and distinguishes types, via the reference encoder
    return bool(msgpack.packb(a, use_bin_type=True) == msgpack.packb(b, use_bin_type=True))


def _ref_decode(data: bytes) -> tuple[bool, object]:
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError,
            UnicodeDecodeError):
        return False, None
    return True, obj


def _has_ext_or_deep(obj: object, depth: int = 0) -> bool:
    if isinstance(obj, msgpack.ExtType) or depth > mpack.MAX_DEPTH:
        return True
    if isinstance(obj, list):
        return any(_has_ext_or_deep(x, depth + 1) for x in obj)
    if isinstance(obj, dict):
        return depth + 1 > mpack.MAX_DEPTH or any(
            _has_ext_or_deep(k, depth + 1) or _has_ext_or_deep(v, depth + 1) for k, v in obj.items())
    return False


def _check_decode_against_reference(data: bytes) -> None:
    ok, ref = _ref_decode(data)
    try:
        ours = mpack.unpackb(data)
    except DecodeError:
        assert not ok or _has_ext_or_deep(ref), data.hex()
        return
    assert ok, data.hex()
    assert _same(ours, ref), data.hex()


@SETTINGS
@given(st.binary(max_size=64))
def test_unpackb_agrees_with_msgpack_on_random_bytes(data: bytes) -> None:
    _check_decode_against_reference(data)


@SETTINGS
@given(objects, st.data())
def test_unpackb_agrees_with_msgpack_on_mutated_messages(obj: object, data: st.DataObject) -> None:
    buf = bytearray(msgpack.packb(obj, use_bin_type=True))
    for _ in range(data.draw(st.integers(0, 3))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(buf)))
    _check_decode_against_reference(bytes(buf[:cut]))


# ---------------------------------------------------------------------------------------------- cobs

zero_heavy = st.lists(st.sampled_from([0, 0, 1, 0x55, 0xFF]), max_size=600).map(bytes)
long_runs = st.lists(st.tuples(st.integers(0, 800), st.booleans()), max_size=4).map(
    lambda parts: b"".join(b"\x37" * n + (b"\x00" if z else b"") for n, z in parts))
cobs_inputs = st.one_of(st.binary(max_size=1200), zero_heavy, long_runs)


@SETTINGS
@given(cobs_inputs)
def test_cobs_matches_library(data: bytes) -> None:
    enc = cobslib.encode(data)
    assert cobs.encode(data) == enc
    assert len(enc) <= cobs.max_encoded_len(len(data))
    assert cobs.decode(enc) == data


@SETTINGS
@given(st.one_of(st.binary(max_size=300), st.lists(st.sampled_from([0, 1, 2, 3, 0xFF, 0x41]), max_size=300).map(bytes)))
def test_cobs_decode_agrees_with_library_on_any_input(data: bytes) -> None:
    try:
        ref: bytes | None = cobslib.decode(data)
    except cobslib.DecodeError:
        ref = None
    try:
        ours: bytes | None = cobs.decode(data)
    except DecodeError:
        ours = None
    assert ours == ref


# ----------------------------------------------------------------------------------------------- crc

def test_crc_reference_preset_check_value() -> None:
    assert ref_crc(b"123456789") == 0x29B1


@SETTINGS
@given(st.binary(max_size=2000), st.integers(0, 2000))
def test_crc16_matches_crc_library(data: bytes, split: int) -> None:
    assert crc16(data) == ref_crc(data)
    assert crc16(memoryview(data)) == ref_crc(data)
    assert crc16(data[split:], crc16(data[:split])) == ref_crc(data)


# --------------------------------------------------------------------------------------------- frame

@SETTINGS
@given(st.one_of(st.binary(max_size=1024), zero_heavy))
def test_frame_matches_reference_construction(payload: bytes) -> None:
    f = encode_frame(payload)
    assert f == ref_frame(payload)
    assert decode_frame(f[:-1]) == payload


@SETTINGS
@given(st.lists(st.binary(max_size=300), max_size=8), st.integers(1, 64), st.randoms(use_true_random=False))
def test_frame_decoder_random_chunking(payloads: list[bytes], maxchunk: int, rnd: random.Random) -> None:
    stream = b"".join(ref_frame(p) for p in payloads)
    d = FrameDecoder()
    got: list[bytes] = []
    pos = 0
    while pos < len(stream):
        n = rnd.randint(1, maxchunk)
        got += d.feed(stream[pos:pos + n])
        pos += n
    assert got == payloads
    assert d.stats() == {"frames": len(payloads), "crc_errors": 0, "framing_errors": 0,
                         "oversize": 0, "bytes_in": len(stream)}


@pytest.mark.parametrize("obj", [{"t": 1, "v": 21.5}, {"id": "n1", "seq": 65535, "vals": [1.5, -3, None]}])
def test_message_frame_pipeline_against_references(obj: dict[str, object]) -> None:
    ref = msgpack.packb(obj, use_bin_type=True)
    f = encode_frame(mpack.packb(obj))
    assert f == ref_frame(ref)
    (payload,) = FrameDecoder().feed(f)
    assert msgpack.unpackb(payload) == obj
