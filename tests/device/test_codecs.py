# Wire codecs (errors, crc, cobs, mpack, frame): golden vectors and malformed input.
# Runs under CPython and the MicroPython unix port. Every expected byte string below comes from a
# spec or a hand computation written out next to it -- never from the code under test.

from devtest import IS_MPY, raises
from fieldlink.codec import cobs, serialframe as frame, mpack
from fieldlink.codec.crc import crc16
from fieldlink.errors import DecodeError, EncodeError
from fieldlink.codec.serialframe import FrameDecoder, decode_frame, encode_frame

H = bytes.fromhex


# ------------------------------------------------------------------------------------------ errors

def test_errors_are_value_errors():
    assert issubclass(DecodeError, ValueError)
    assert issubclass(EncodeError, ValueError)
    assert not issubclass(DecodeError, EncodeError)


# --------------------------------------------------------------------------------------------- crc

def _crc_bitwise(data):
    # Reference written from the CRC-16/CCITT-FALSE definition, one bit at a time (no table):
    # width 16, poly 0x1021, init 0xFFFF, refin/refout false, xorout 0.
    c = 0xFFFF
    for b in data:
        c ^= b << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
            c &= 0xFFFF
    return c


def test_crc16_catalogue_check_values():
    # "check" value of CRC-16/CCITT-FALSE (a.k.a. CRC-16/IBM-3740) in the Williams/reveng catalogue
    assert crc16(b"123456789") == 0x29B1
    # empty input leaves the init value untouched (no xorout)
    assert crc16(b"") == 0xFFFF
    # widely published CCITT-FALSE value for the single byte "A"
    assert crc16(b"A") == 0xB915


def test_crc16_matches_bitwise_reference():
    samples = [b"\x00", b"\xff", b"\x00" * 7, bytes(range(256)), b"fieldlink" * 13, b"\x80\x01"]
    for s in samples:
        assert crc16(s) == _crc_bitwise(s), s


def test_crc16_accepts_buffers_and_chains():
    data = b"123456789"
    assert crc16(bytearray(data)) == 0x29B1
    assert crc16(memoryview(data)) == 0x29B1
    assert crc16(memoryview(b"xx123456789yy")[2:11]) == 0x29B1
    assert crc16(data[4:], crc16(data[:4])) == 0x29B1


def test_crc16_rejects_bad_arguments():
    raises(TypeError, crc16, "123456789")
    raises(ValueError, crc16, b"1", 0x10000)
    raises(ValueError, crc16, b"1", -1)


# -------------------------------------------------------------------------------------------- cobs

# Examples from the Wikipedia COBS article / Cheshire & Baker, with the trailing 0x00 delimiter
# removed (the PyPI `cobs` library does not emit it either).
_R = bytes(range(1, 256))  # 01 02 .. FF
_COBS_VECTORS = [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    # 01..FE (254 non-zero bytes): one full block, no extra block after it
    (_R[:254], b"\xff" + _R[:254]),
    # 00 01..FE
    (b"\x00" + _R[:254], b"\x01\xff" + _R[:254]),
    # 01..FF (255 bytes): full block of 01..FE, then a 1-byte block FF
    (_R, b"\xff" + _R[:254] + b"\x02\xff"),
    # 02..FF 00 (254 non-zero bytes then a zero)
    (_R[1:] + b"\x00", b"\xff" + _R[1:] + b"\x01\x01"),
    # 03..FF 00 01
    (_R[2:] + b"\x00\x01", b"\xfe" + _R[2:] + b"\x02\x01"),
]


def test_cobs_golden_vectors():
    for raw, enc in _COBS_VECTORS:
        assert cobs.encode(raw) == enc, raw
        assert cobs.decode(enc) == raw, enc


def test_cobs_accepts_buffers():
    assert cobs.encode(bytearray(b"\x11\x22\x00\x33")) == b"\x03\x11\x22\x02\x33"
    assert cobs.encode(memoryview(b"..\x11\x22\x00\x33")[2:]) == b"\x03\x11\x22\x02\x33"
    assert cobs.decode(memoryview(b"\x03\x11\x22\x02\x33")) == b"\x11\x22\x00\x33"
    assert cobs.decode(bytearray(b"\x01\x01")) == b"\x00"


def test_cobs_roundtrip_block_boundaries():
    # runs of non-zero bytes around the 254-byte block size, with zeros in various places
    for run in (0, 1, 252, 253, 254, 255, 507, 508, 509, 762):
        body = bytes((i % 255) + 1 for i in range(run))
        for raw in (body, body + b"\x00", b"\x00" + body, body + b"\x00" + body, b"\x00" + body + b"\x00\x00"):
            enc = cobs.encode(raw)
            assert b"\x00" not in enc
            assert len(enc) <= cobs.max_encoded_len(len(raw))
            assert cobs.decode(enc) == raw


def test_cobs_decode_errors():
    raises(DecodeError, cobs.decode, b"\x02\x00")  # zero inside a block
    raises(DecodeError, cobs.decode, b"\x01\x00")  # zero where a length code is expected
    raises(DecodeError, cobs.decode, b"\x03\x11\x22\x02\x33\x00")  # delimiter must not be passed
    raises(DecodeError, cobs.decode, b"\x05\x11")  # block claims 4 bytes, 1 present
    raises(DecodeError, cobs.decode, b"\x02")
    raises(DecodeError, cobs.decode, b"\xff" + b"\x01" * 200)
    raises(TypeError, cobs.encode, "text")
    raises(TypeError, cobs.decode, "text")


# ------------------------------------------------------------------------------------------- mpack

# (object, encoding) pairs from the MessagePack spec (github.com/msgpack/msgpack/blob/master/spec.md):
# format byte + big-endian payload, smallest form, unsigned formats for non-negative ints.
_MP_VECTORS = [
    (None, H("c0")),
    (False, H("c2")),
    (True, H("c3")),
    (0, H("00")),
    (1, H("01")),
    (127, H("7f")),  # largest positive fixint
    (128, H("cc80")),
    (255, H("ccff")),
    (256, H("cd0100")),
    (65535, H("cdffff")),
    (65536, H("ce00010000")),
    (2 ** 32 - 1, H("ceffffffff")),
    (2 ** 32, H("cf0000000100000000")),
    (2 ** 64 - 1, H("cfffffffffffffffff")),
    (-1, H("ff")),
    (-32, H("e0")),  # smallest negative fixint: 0b111xxxxx
    (-33, H("d0df")),
    (-128, H("d080")),
    (-129, H("d1ff7f")),
    (-32768, H("d18000")),
    (-32769, H("d2ffff7fff")),
    (-2 ** 31, H("d280000000")),
    (-2 ** 31 - 1, H("d3ffffffff7fffffff")),
    (-2 ** 63, H("d38000000000000000")),
    # 1.5 = 0x3FF8000000000000 (sign 0, exponent 1023, fraction .1b)
    (1.5, H("cb3ff8000000000000")),
    # -2.0 = 0xC000000000000000
    (-2.0, H("cbc000000000000000")),
    # 21.5 = 10101.1b = 1.01011b * 2**4 -> exponent 1027 = 0x403, fraction 0101 1000.. -> 0x4035800000000000
    (21.5, H("cb4035800000000000")),
    ("", H("a0")),
    ("a", H("a161")),
    ("é", H("a2c3a9")),  # U+00E9 in UTF-8 is C3 A9
    ("€", H("a3e282ac")),  # U+20AC
    ("\U0001F600", H("a4f09f9880")),  # 4-byte UTF-8
    ("x" * 31, H("bf") + b"x" * 31),  # largest fixstr
    ("x" * 32, H("d920") + b"x" * 32),  # str8
    ("x" * 256, H("da0100") + b"x" * 256),  # str16
    (b"", H("c400")),
    (b"\x00\xff", H("c40200ff")),
    (b"\xab" * 300, H("c5012c") + b"\xab" * 300),  # 300 = 0x012c -> bin16
    ([], H("90")),
    ([1, "a", None], H("9301a161c0")),
    (list(range(15)), H("9f") + bytes(range(15))),  # largest fixarray
    (list(range(16)), H("dc0010") + bytes(range(16))),  # array16
    ({}, H("80")),
    ({"a": 1}, H("81a16101")),
    ({"k": [True, {}]}, H("81a16b92c380")),
    ([[[]]], H("919190")),
]


def test_mpack_golden_encode():
    for obj, enc in _MP_VECTORS:
        assert mpack.packb(obj) == enc, obj


def test_mpack_golden_decode():
    for obj, enc in _MP_VECTORS:
        got = mpack.unpackb(enc)
        assert got == obj, enc
        assert type(got) is type(obj), enc


def test_mpack_container_type_mapping():
    assert mpack.packb((1, 2)) == H("920102")
    assert mpack.packb(bytearray(b"\x01")) == H("c40101")
    assert mpack.packb(memoryview(b"\x01\x02")) == H("c4020102")
    assert mpack.unpackb(H("c40101")) == b"\x01" and type(mpack.unpackb(H("c40101"))) is bytes
    assert mpack.unpackb(H("920102")) == [1, 2]
    # every buffer type decodes the same, including strict UTF-8 checks
    for conv in (bytes, bytearray, memoryview):
        assert mpack.unpackb(conv(H("92a2c3a9c4017a"))) == ["é", b"z"]
        raises(DecodeError, mpack.unpackb, conv(H("a2c080")))


def test_mpack_big_map_header_and_roundtrip():
    d = {}
    for i in range(16):
        d["k%d" % i] = i
    enc = mpack.packb(d)
    assert enc[:3] == H("de0010")  # map16 with 16 entries (order of entries is dict order)
    assert mpack.unpackb(enc) == d
    d15 = {}
    for i in range(15):
        d15[i] = -i
    assert mpack.packb(d15)[0] == 0x8F  # largest fixmap
    assert mpack.unpackb(mpack.packb(d15)) == d15


def test_mpack_single_float_and_decode_float32():
    # 1.5 as IEEE754 binary32 = 0x3FC00000
    assert mpack.packb(1.5, use_single_float=True) == H("ca3fc00000")
    assert mpack.unpackb(H("ca3fc00000")) == 1.5
    assert mpack.unpackb(H("cac0000000")) == -2.0


def test_mpack_decodes_non_minimal_ints():
    # other encoders may use wider formats than needed; all are valid msgpack
    assert mpack.unpackb(H("cd0001")) == 1
    assert mpack.unpackb(H("ce00000001")) == 1
    assert mpack.unpackb(H("d0ff")) == -1
    assert mpack.unpackb(H("d3ffffffffffffffff")) == -1
    assert mpack.unpackb(H("d101")[:1] + H("0001")) == 1
    assert mpack.unpackb(H("d90161")) == "a"  # str8 for a 1-char string
    assert mpack.unpackb(H("dd0000000101")) == [1]  # array32
    assert mpack.unpackb(H("df00000001a16101")) == {"a": 1}  # map32


def test_mpack_unpack_from_sequence():
    buf = H("01") + H("a161") + H("920102") + H("c0")
    out = []
    pos = 0
    while pos < len(buf):
        obj, pos = mpack.unpack_from(buf, pos)
        out.append(obj)
    assert out == [1, "a", [1, 2], None]
    assert pos == len(buf)
    assert mpack.unpack_from(memoryview(buf), 1) == ("a", 3)
    assert mpack.unpack_from(bytearray(buf), 3) == ([1, 2], 6)
    raises(DecodeError, mpack.unpack_from, buf, len(buf))  # nothing left
    raises(DecodeError, mpack.unpack_from, buf, len(buf) + 1)
    raises(DecodeError, mpack.unpack_from, buf, -1)


def test_mpack_depth_limit():
    nested = None
    for _ in range(mpack.MAX_DEPTH):
        nested = [nested]
    assert mpack.unpackb(mpack.packb(nested)) == nested
    raises(EncodeError, mpack.packb, [nested])
    raises(EncodeError, mpack.packb, {"a": nested})
    ok = b"\x91" * 32 + b"\xc0"
    assert mpack.unpackb(ok) == nested
    raises(DecodeError, mpack.unpackb, b"\x91" * 33 + b"\xc0")
    raises(DecodeError, mpack.unpackb, b"\x81\xa1a" * 33 + b"\xc0")
    raises(DecodeError, mpack.unpackb, b"\x91" * 100000)  # no recursion, just a clean error
    # a cycle is caught by the depth limit, not by a RecursionError
    cyc = []
    cyc.append(cyc)
    raises(EncodeError, mpack.packb, cyc)


def test_mpack_encode_errors():
    raises(EncodeError, mpack.packb, 2 ** 64)
    raises(EncodeError, mpack.packb, -2 ** 63 - 1)
    raises(EncodeError, mpack.packb, set([1]))
    raises(EncodeError, mpack.packb, object())
    raises(EncodeError, mpack.packb, [1, 2, object()])
    raises(EncodeError, mpack.packb, 1e300, True)  # finite but beyond float32 range
    raises(EncodeError, mpack.packb, -1e300, True)
    # infinities themselves are representable: binary32 +inf = 0x7F800000, -inf = 0xFF800000
    assert mpack.packb(float("inf"), True) == H("ca7f800000")
    assert mpack.packb(float("-inf"), True) == H("caff800000")
    # binary64 +inf = 0x7FF0000000000000
    assert mpack.packb(float("inf")) == H("cb7ff0000000000000")
    if not IS_MPY:
        raises(EncodeError, mpack.packb, "\ud800")  # lone surrogate is not UTF-8 encodable


def test_mpack_truncated_at_every_prefix():
    sample = H("83a174cf0000000100000000a176cb4035800000000000a16c93c2c4020102d9036162630a")
    # {"t": 2**32, "v": 21.5, "l": [False, b"\x01\x02", "abc"]} + trailing 0x0a
    obj, end = mpack.unpack_from(sample)
    assert obj == {"t": 2 ** 32, "v": 21.5, "l": [False, b"\x01\x02", "abc"]}
    assert end == len(sample) - 1
    raises(DecodeError, mpack.unpackb, sample)  # trailing byte rejected
    body = sample[:end]
    for i in range(len(body)):
        raises(DecodeError, mpack.unpackb, body[:i])
        raises(DecodeError, mpack.unpack_from, body[:i])
    assert mpack.unpackb(body) == obj


def test_mpack_reserved_and_ext_rejected():
    raises(DecodeError, mpack.unpackb, H("c1"))
    raises(DecodeError, mpack.unpackb, H("91c1"))
    for ext in ("d40100", "d5010000", "d601" + "00" * 4, "d701" + "00" * 8, "d801" + "00" * 16,
                "c70101ab", "c8000101ab", "c9000000010101", "d6ff00000000"):  # last: timestamp32
        e = raises(DecodeError, mpack.unpackb, H(ext))
        assert "ext" in str(e), ext


def test_mpack_bad_utf8_rejected():
    for bad in ("a1ff",  # 0xFF never appears in UTF-8
                "a1c3",  # truncated 2-byte sequence
                "a2e282",  # truncated 3-byte sequence
                "a2c080",  # overlong encoding of U+0000
                "a3e08080",  # overlong 3-byte
                "a3eda080",  # UTF-16 surrogate U+D800
                "a4f4908080",  # U+110000, beyond Unicode
                "a4f8888080",  # 5-byte form, invalid
                "a241c3",  # valid ASCII then truncated sequence
                "a2c341",  # lead byte followed by a non-continuation
                "d902ed9f"):  # truncated, inside str8
        raises(DecodeError, mpack.unpackb, H(bad))
    assert mpack.unpackb(H("a3ed9fbf")) == "\ud7ff"  # last code point before the surrogates
    assert mpack.unpackb(H("a4f48fbfbf")) == "\U0010ffff"


def test_mpack_hostile_lengths():
    for bad in ("ddffffffff",  # array32 of 4G items
                "dfffffffff",  # map32 of 4G entries
                "c6ffffffff",  # bin32 of 4 GB
                "dbffffffff",  # str32 of 4 GB
                "dcffff",  # array16 of 65535 items, no data
                "deffff01",
                "9f",  # fixarray of 15, no data
                "8f01",
                "82010203",  # map of 2 entries needs >= 4 bytes, 3 present
                "c5ffff00"):
        raises(DecodeError, mpack.unpackb, H(bad))


def test_mpack_map_key_rules():
    raises(DecodeError, mpack.unpackb, H("8190c0"))  # list as key
    raises(DecodeError, mpack.unpackb, H("8180c0"))  # map as key
    assert mpack.unpackb(H("8101a178")) == {1: "x"}
    assert mpack.unpackb(H("81c40178c0")) == {b"x": None}
    assert mpack.unpackb(H("82a16101a16102")) == {"a": 2}  # duplicate key: last wins


def test_mpack_wrong_python_types():
    raises(TypeError, mpack.unpackb, "\x01")
    raises(TypeError, mpack.unpackb, None)
    raises(TypeError, mpack.unpack_from, [1])


# ------------------------------------------------------------------------------------------- frame

# Worked example of docs/protocol.md "Serial frame":
#   message {"t": 1, "v": 21.5}
#   payload (msgpack, spec): 82 | a1 74 | 01 | a1 76 | cb 40 35 80 00 00 00 00 00          (15 bytes)
#   CRC-16/CCITT-FALSE over the payload: 0x30A1, appended big-endian: 30 a1
#     (computed once with the PyPI `crc` library, crc.Calculator(crc.Crc16.IBM_3740), and
#      cross-checked by the bit-by-bit reference above in test_frame_worked_example)
#   COBS over the 17 bytes (by hand): run of 10 non-zero bytes 82..80 then a zero -> 0b 82 .. 80;
#     the next four zeros each end an empty run -> 01 01 01 01; final run 30 a1 -> 03 30 a1
#   delimiter 00
_EX_PAYLOAD = H("82a17401a176cb4035800000000000")
_EX_FRAME = H("0b82a17401a176cb403580010101010330a100")


def test_frame_worked_example():
    assert mpack.unpackb(_EX_PAYLOAD) == {"t": 1, "v": 21.5}
    assert _crc_bitwise(_EX_PAYLOAD) == 0x30A1
    assert crc16(_EX_PAYLOAD) == 0x30A1
    assert encode_frame(_EX_PAYLOAD) == _EX_FRAME
    assert decode_frame(_EX_FRAME[:-1]) == _EX_PAYLOAD
    if not IS_MPY:  # MicroPython dicts iterate in hash order, so only CPython reproduces the byte order
        assert mpack.packb({"t": 1, "v": 21.5}) == _EX_PAYLOAD


def test_frame_empty_payload():
    # CRC of b"" is 0xFFFF -> body ff ff -> COBS 03 ff ff -> delimiter
    assert encode_frame(b"") == b"\x03\xff\xff\x00"
    assert decode_frame(b"\x03\xff\xff") == b""
    assert encode_frame(bytearray(b"")) == b"\x03\xff\xff\x00"


def test_frame_decode_errors():
    body = _EX_FRAME[:-1]
    bad = bytearray(body)
    bad[3] ^= 0x01  # payload byte flipped
    e = raises(DecodeError, decode_frame, bytes(bad))
    assert "CRC" in str(e)
    bad = bytearray(body)
    bad[-1] ^= 0x80  # CRC byte flipped
    raises(DecodeError, decode_frame, bytes(bad))
    raises(DecodeError, decode_frame, b"")  # decodes to 0 bytes
    raises(DecodeError, decode_frame, b"\x02\x01")  # decodes to 1 byte: shorter than the CRC
    raises(DecodeError, decode_frame, body[:-1])  # truncated COBS block
    raises(DecodeError, decode_frame, _EX_FRAME)  # delimiter included -> zero inside
    raises(TypeError, encode_frame, "text")


def _payloads():
    return [_EX_PAYLOAD, b"", b"\x00", b"\x00" * 40, bytes(range(256)), b"\xc0", b"\x01" * 600]


def test_frame_decoder_one_byte_chunks():
    stream = b"".join(encode_frame(p) for p in _payloads())
    d = FrameDecoder()
    got = []
    for i in range(len(stream)):
        got += d.feed(stream[i:i + 1])
        assert d.buffered() <= d.capacity()
    assert got == _payloads()
    assert d.frames == len(_payloads())
    assert d.crc_errors == 0 and d.framing_errors == 0 and d.oversize == 0
    assert d.bytes_in == len(stream)
    # all at once and in odd chunk sizes give the same result
    d2 = FrameDecoder()
    assert d2.feed(stream) == _payloads()
    for size in (2, 3, 7, 254, 255, 1000):
        d3 = FrameDecoder()
        got = []
        for i in range(0, len(stream), size):
            got += d3.feed(memoryview(stream)[i:i + size])
        assert got == _payloads(), size


def test_frame_decoder_garbage_and_resync():
    good = [b"\x01", _EX_PAYLOAD, b"\x93\x01\x02\x03"]
    frames = [encode_frame(p) for p in good]
    stream = (b"\x13\x37\xff\xfe noise" + b"\x00"  # garbage before (ends at a delimiter)
              + frames[0]
              + b"\x00\x00\x00"  # empty frames: ignored silently
              + b"\x05\x11"  # truncated COBS block -> framing error
              + b"\x00" + frames[1]
              + b"\x02\x01\x00"  # decodes to 1 byte -> framing error (too short)
              + b"\x03\x01\x02\x00"  # decodes to 01 02: CRC(b"")=0xFFFF != 0x0102 -> crc error
              + frames[2])
    d = FrameDecoder()
    assert d.feed(stream) == good
    assert d.frames == 3
    assert d.framing_errors >= 2  # noise + truncated + short (noise may also fail as CRC)
    assert d.framing_errors + d.crc_errors == 4
    assert d.crc_errors >= 1
    assert d.oversize == 0
    st = d.stats()
    assert st == {"frames": 3, "crc_errors": d.crc_errors, "framing_errors": d.framing_errors,
                  "oversize": 0, "bytes_in": len(stream)}


def test_frame_decoder_counts_crc_error_and_continues():
    f = bytearray(encode_frame(_EX_PAYLOAD))
    f[2] ^= 0x40  # corrupt a payload byte (stays non-zero: a1 -> e1)
    d = FrameDecoder()
    out = d.feed(bytes(f) + encode_frame(b"ok"))
    assert out == [b"ok"]
    assert d.crc_errors == 1 and d.framing_errors == 0 and d.frames == 1


def test_frame_decoder_oversize_without_growing():
    d = FrameDecoder(max_frame=64)
    cap = d.capacity()
    assert cap == 64 + 2 + 1  # max COBS body for 66 bytes (payload + CRC): one code byte per 254
    buf = d._buf
    big = encode_frame(b"\x55" * 5000)
    out = []
    for i in range(0, len(big), 100):
        out += d.feed(big[i:i + 100])
        assert d.buffered() <= cap
        assert len(d._buf) == cap and d._buf is buf
    out += d.feed(encode_frame(b"\x11" * 64))  # exactly max_frame: accepted
    out += d.feed(encode_frame(b"\x22" * 65))  # one over: rejected
    out += d.feed(encode_frame(b"next"))
    assert out == [b"\x11" * 64, b"next"]
    assert d.oversize == 2
    assert d.crc_errors == 0 and d.framing_errors == 0
    assert len(d._buf) == cap and d._buf is buf


def test_frame_decoder_oversize_detected_after_decoding():
    # With max_frame=300 the body buffer holds 304 bytes (302 + 302//254 + 1). A 301-byte payload with
    # zeros is 303 bytes with its CRC and encodes to 304 bytes (no 254-byte runs, so one code byte per
    # zero plus one), so it fits the buffer and is only recognised as oversize once decoded.
    d = FrameDecoder(max_frame=300)
    assert d.capacity() == 304
    p = (b"\x00" + b"\x07" * 99) * 3 + b"\x00"
    assert len(p) == 301
    f = encode_frame(p)
    assert len(f) == 304 + 1
    assert d.feed(f + encode_frame(b"z")) == [b"z"]
    assert d.oversize == 1 and d.frames == 1


def test_frame_decoder_decodes_messages_end_to_end():
    msgs = [{"t": 1, "v": 21.5}, [1, 2, "x"], {"n": None, "b": b"\x00\x00"}]
    stream = b"\x00".join(encode_frame(mpack.packb(m)) for m in msgs)
    d = FrameDecoder()
    assert [mpack.unpackb(p) for p in d.feed(stream)] == msgs


def test_frame_decoder_rejects_bad_config():
    raises(ValueError, FrameDecoder, 0)
    raises(ValueError, FrameDecoder, -5)
    assert frame.MAX_FRAME == 1024
    assert FrameDecoder().max_frame == 1024


def test_frame_decoder_survives_any_bytes():
    # deterministic pseudo-random bytes (LCG), fed in varying chunk sizes: never raises
    x = 12345
    data = bytearray(6000)
    for i in range(len(data)):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        data[i] = (x >> 16) & 0xFF if (x >> 8) & 7 else 0
    d = FrameDecoder(max_frame=100)
    pos = 0
    step = 1
    while pos < len(data):
        d.feed(data[pos:pos + step])
        assert d.buffered() <= d.capacity()
        pos += step
        step = step % 97 + 1
    assert d.bytes_in == len(data)
    # then the stream still carries a good frame after a delimiter
    assert d.feed(b"\x00" + encode_frame(b"alive")) == [b"alive"]
