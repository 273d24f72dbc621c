"""Bounded fuzzing of the serial frame decoder and the msgpack decoder (CPython only, < 20 s).

- unpackb / unpack_from: for any bytes only DecodeError may escape.
- FrameDecoder.feed: never raises, never grows its buffers, and its output equals an independent
  reference model built from the PyPI `cobs` and `crc` libraries: split the stream at every 0x00,
  drop empty pieces, keep each piece that COBS-decodes to >= 2 bytes whose last two bytes are the
  big-endian CRC-16/CCITT-FALSE of the rest and whose payload is <= max_frame; the error counters
  must match the model exactly.
"""

from __future__ import annotations

import random

import crc as crclib
import msgpack
from cobs import cobs as cobslib
from fieldlink.codec import mpack
from fieldlink.codec.serialframe import FrameDecoder, encode_frame
from fieldlink.errors import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REF_CRC = crclib.Calculator(crclib.Crc16.IBM_3740)  # CRC-16/CCITT-FALSE (check 0x29B1)
assert REF_CRC.checksum(b"123456789") == 0x29B1

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def body_capacity(max_frame: int) -> int:
    # docs/protocol.md: the largest COBS body of a valid frame is n + n // 254 + 1 with n = max_frame + 2
    n = max_frame + 2
    return n + n // 254 + 1


def ref_model(stream: bytes, max_frame: int) -> tuple[list[bytes], dict[str, int]]:
    """Reference model of FrameDecoder: (payloads, counters) for a whole stream."""
    cap = body_capacity(max_frame)
    pieces = stream.split(b"\x00")
    tail = pieces.pop()  # bytes after the last 0x00 are an unfinished frame
    out = []
    st = {"frames": 0, "crc_errors": 0, "framing_errors": 0, "oversize": 0, "bytes_in": len(stream)}
    for piece in pieces:
        if not piece:
            continue  # empty frame: ignored silently
        if len(piece) > cap:
            st["oversize"] += 1
            continue
        try:
            dec = cobslib.decode(piece)
        except cobslib.DecodeError:
            st["framing_errors"] += 1
            continue
        if len(dec) < 2:
            st["framing_errors"] += 1
        elif REF_CRC.checksum(dec[:-2]) != int.from_bytes(dec[-2:], "big"):
            st["crc_errors"] += 1
        elif len(dec) - 2 > max_frame:
            st["oversize"] += 1
        else:
            st["frames"] += 1
            out.append(dec[:-2])
    if len(tail) > cap:
        st["oversize"] += 1  # counted as soon as the unfinished frame overflows the buffer
    return out, st


def ref_frame(payload: bytes) -> bytes:
    return cobslib.encode(payload + REF_CRC.checksum(payload).to_bytes(2, "big")) + b"\x00"


def run_decoder(stream: bytes, max_frame: int, rnd: random.Random) -> tuple[list[bytes], FrameDecoder]:
    d = FrameDecoder(max_frame=max_frame)
    buf_id, cap = id(d._buf), len(d._buf)
    got: list[bytes] = []
    pos = 0
    while pos < len(stream):
        n = rnd.choice((1, 2, 3, 17, 64, 255, 1000, 5000))
        got += d.feed(stream[pos:pos + n])
        assert d.buffered() <= d.capacity() == cap
        assert id(d._buf) == buf_id and len(d._buf) == cap
        pos += n
    return got, d


def check_stream(stream: bytes, max_frame: int, rnd: random.Random) -> list[bytes]:
    got, d = run_decoder(stream, max_frame, rnd)
    expected, counters = ref_model(stream, max_frame)
    assert got == expected
    assert d.stats() == counters
    return got


def is_subsequence(needles: list[bytes], hay: list[bytes]) -> bool:
    it = iter(hay)
    return all(any(n == h for h in it) for n in needles)


def unpack_only_decode_error(data: bytes) -> None:
    try:
        mpack.unpackb(data)
    except DecodeError:
        pass
    pos = 0
    while pos < len(data):  # walk a buffer of concatenated objects until the first error
        try:
            _, nxt = mpack.unpack_from(data, pos)
        except DecodeError:
            break
        assert pos < nxt <= len(data)
        pos = nxt


# ------------------------------------------------------------------------------------- hypothesis

@SETTINGS
@given(st.binary(max_size=400))
def test_unpackb_random_bytes_only_decode_error(data: bytes) -> None:
    unpack_only_decode_error(data)


@SETTINGS
@given(st.binary(max_size=2000), st.integers(8, 600), st.randoms(use_true_random=False))
def test_frame_decoder_random_bytes(data: bytes, max_frame: int, rnd: random.Random) -> None:
    check_stream(data, max_frame, rnd)


@SETTINGS
@given(
    st.lists(st.tuples(st.binary(max_size=200), st.binary(max_size=80)), min_size=1, max_size=6),
    st.randoms(use_true_random=False),
)
def test_frames_embedded_in_garbage_are_recovered(parts: list[tuple[bytes, bytes]], rnd: random.Random) -> None:
    # garbage, then a delimiter (the resynchronisation point), then a valid frame
    payloads = [p for p, _ in parts]
    stream = b"".join(g + b"\x00" + ref_frame(p) for p, g in parts)
    got = check_stream(stream, 256, rnd)
    assert is_subsequence(payloads, got)


# ----------------------------------------------------------------------------------- seeded loop

def _random_message(rnd: random.Random, depth: int = 0) -> object:
    k = rnd.randrange(9 if depth < 3 else 6)
    if k == 0:
        return rnd.choice([None, True, False])
    if k == 1:
        return rnd.randint(-(2 ** 63), 2 ** 64 - 1) if rnd.random() < 0.3 else rnd.randint(-300, 70000)
    if k == 2:
        return rnd.uniform(-1e6, 1e6)
    if k == 3:
        return "".join(rnd.choice("abcé€😀") for _ in range(rnd.randrange(40)))
    if k == 4 or k == 5:
        return rnd.randbytes(rnd.randrange(300))
    if k == 6 or k == 7:
        return [_random_message(rnd, depth + 1) for _ in range(rnd.randrange(18))]
    return {f"k{i}": _random_message(rnd, depth + 1) for i in range(rnd.randrange(18))}


def _corrupt(rnd: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    op = rnd.randrange(5)
    if op == 0 and b:  # flip bits
        for _ in range(rnd.randint(1, 3)):
            b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
    elif op == 1 and b:  # truncate
        del b[rnd.randrange(len(b)):]
    elif op == 2:  # insert random bytes
        i = rnd.randrange(len(b) + 1)
        b[i:i] = rnd.randbytes(rnd.randint(1, 8))
    elif op == 3 and b:  # delete a slice
        i = rnd.randrange(len(b))
        del b[i:i + rnd.randint(1, 8)]
    else:  # overwrite with a hostile header
        i = rnd.randrange(len(b) + 1)
        b[i:i] = rnd.choice([b"\xdd\xff\xff\xff\xff", b"\xdf\x7f\xff\xff\xff", b"\xc6\xff\xff\xff\xff",
                             b"\xdb\x10\x00\x00\x00", b"\xc1", b"\xd4\x01", b"\x91" * 40, b"\xa3\xed\xa0\x80"])
    return bytes(b)


def test_seeded_corrupted_messages_and_frames() -> None:
    rnd = random.Random(0xF1E1D)
    for _ in range(3000):
        msg = _random_message(rnd)
        packed = msgpack.packb(msg, use_bin_type=True)
        assert mpack.unpackb(packed) == msg
        bad = _corrupt(rnd, packed)
        unpack_only_decode_error(bad)

        # a stream of good frames with corrupted ones in between
        good = [mpack.packb(_random_message(rnd)) for _ in range(rnd.randint(1, 3))]
        pieces = []
        for p in good:
            if rnd.random() < 0.5:
                pieces.append(_corrupt(rnd, encode_frame(packed)))
                pieces.append(b"\x00")  # resynchronise before the next good frame
            pieces.append(encode_frame(p))
        stream = b"".join(pieces)
        got = check_stream(stream, 1024, rnd)
        fitting = [p for p in good if len(p) <= 1024]
        assert is_subsequence(fitting, got)
        for p in fitting:  # recovered payloads are canonical encodings: decode and re-encode to the same bytes
            assert mpack.packb(mpack.unpackb(p)) == p
