# Link frame header golden vectors (hand-assembled byte by byte from docs/protocol.md) and parser
# rejection of malformed frames.
from devtest import raises

from fieldlink.link import frame as lf
from fieldlink.codec import mpack


def _parse(frame):
    h = lf.Header()
    return lf.parse(frame, len(frame), h), h


def test_golden_telemetry_frame():
    # version 01 | type 01 telemetry | flags 01 ACK_REQ | boot 2A | seq 12 34 | msgid 00 00 |
    # body {"t": 21} = 81 (fixmap 1) A1 74 (fixstr "t") 15 (fixint 21)
    want = bytes([0x01, 0x01, 0x01, 0x2A, 0x12, 0x34, 0x00, 0x00, 0x81, 0xA1, 0x74, 0x15])
    body = mpack.packb({"t": 21})
    assert body == bytes([0x81, 0xA1, 0x74, 0x15])
    got = lf.build(lf.T_TELEMETRY, lf.F_ACK_REQ, 0x2A, 0x1234, 0, body)
    assert got == want
    err, h = _parse(want)
    assert err == 0
    assert (h.mtype, h.flags, h.boot, h.seq, h.msgid, h.fidx, h.fcnt) == (1, 1, 0x2A, 0x1234, 0, 0, 1)
    assert (h.body, h.end) == (8, 12)


def test_golden_fragmented_command_frame():
    # 01 | 03 command | 07 = ACK_REQ|FRAG|CTR | boot 05 | seq 00 07 | msgid BE EF |
    # counter 01 02 03 04 | fragment index 01, count 03 | body slice 92 01 02
    want = bytes([0x01, 0x03, 0x07, 0x05, 0x00, 0x07, 0xBE, 0xEF, 0x01, 0x02, 0x03, 0x04, 0x01, 0x03,
                  0x92, 0x01, 0x02])
    got = lf.build(lf.T_COMMAND, lf.F_ACK_REQ | lf.F_FRAG | lf.F_CTR, 5, 7, 0xBEEF, b"\x92\x01\x02",
                   0x01020304, 1, 3)
    assert got == want
    err, h = _parse(want)
    assert err == 0
    assert (h.ctr, h.fidx, h.fcnt, h.msgid, h.body, h.end) == (0x01020304, 1, 3, 0xBEEF, 14, 17)


def test_golden_ack_frame():
    # 01 | 04 ack | 00 | boot FF | seq 00 00 | msgid FF FE (acks sequence 65534) | [0, nil] = 92 00 C0
    want = bytes([0x01, 0x04, 0x00, 0xFF, 0x00, 0x00, 0xFF, 0xFE, 0x92, 0x00, 0xC0])
    assert lf.build(lf.T_ACK, 0, 0xFF, 0, 0xFFFE, mpack.packb([lf.ST_OK, None])) == want


def test_hmac_rfc4231_case2():
    # RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
    want = bytes([0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75,
                  0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec,
                  0x38, 0x43])
    assert lf.hmac_sha256(b"Jefe", b"what do ya want for nothing?") == want


def test_auth_tag_layout():
    f = lf.build(lf.T_HEARTBEAT, 0, 1, 2, 3, b"\xc0", key=b"Jefe")
    # flags gain F_AUTH (08); the tag is the first 8 bytes of HMAC over everything before it
    assert f[:9] == bytes([0x01, 0x0A, 0x08, 0x01, 0x00, 0x02, 0x00, 0x03, 0xC0])
    assert f[9:] == lf.hmac_sha256(b"Jefe", f[:9])[:8]
    assert len(f) == 17
    assert lf.check_tag(b"Jefe", f, len(f))
    assert not lf.check_tag(b"Jefx", f, len(f))
    bad = bytearray(f)
    bad[8] ^= 1
    assert not lf.check_tag(b"Jefe", bad, len(bad))
    err, h = _parse(f)
    assert err == 0 and (h.body, h.end) == (8, 9)


def test_frame_size_limit():
    assert lf.overhead(0) == 8
    assert lf.overhead(lf.F_CTR | lf.F_FRAG | lf.F_AUTH) == 8 + 4 + 2 + 8
    assert len(lf.build(lf.T_RAW, 0, 0, 0, 0, bytes(242))) == 250
    e = raises(ValueError, lf.build, lf.T_RAW, 0, 0, 0, 0, bytes(243))
    assert "251" in str(e)


def test_parser_rejects_each_error_class():
    good = lf.build(lf.T_EVENT, 0, 0, 1, 0, b"\xc0")
    assert _parse(good)[0] == 0
    assert _parse(b"")[0] == lf.E_SHORT
    assert _parse(good[:7])[0] == lf.E_SHORT
    v2 = bytearray(good)
    v2[0] = 2     # a future version is rejected before anything else is looked at
    assert _parse(v2)[0] == lf.E_VERSION
    assert _parse(b"\x02")[0] == lf.E_VERSION
    t = bytearray(good)
    t[1] = 0x0C
    assert _parse(t)[0] == lf.E_TYPE
    t[1] = 0x00
    assert _parse(t)[0] == lf.E_TYPE
    fl = bytearray(good)
    fl[2] = 0x10
    assert _parse(fl)[0] == lf.E_FLAGS
    # fragment fields missing, index >= count, count 0, count above MAX_FRAGS
    assert _parse(bytes([1, 1, lf.F_FRAG, 0, 0, 1, 0, 0, 0]))[0] == lf.E_SHORT
    assert _parse(bytes([1, 1, lf.F_FRAG, 0, 0, 1, 0, 0, 3, 3]))[0] == lf.E_FRAG
    assert _parse(bytes([1, 1, lf.F_FRAG, 0, 0, 1, 0, 0, 0, 0]))[0] == lf.E_FRAG
    assert _parse(bytes([1, 1, lf.F_FRAG, 0, 0, 1, 0, 0, 0, 33]))[0] == lf.E_FRAG
    # counter truncated; auth flag on a frame too short for a tag
    assert _parse(bytes([1, 3, lf.F_CTR, 0, 0, 1, 0, 0, 1, 2]))[0] == lf.E_SHORT
    assert _parse(bytes([1, 1, lf.F_AUTH, 0, 0, 1, 0, 0, 1, 2]))[0] == lf.E_SHORT


def test_every_type_constant_is_distinct_and_named():
    types = [lf.T_TELEMETRY, lf.T_EVENT, lf.T_COMMAND, lf.T_ACK, lf.T_BEACON, lf.T_JOIN_REQ,
             lf.T_JOIN_ACCEPT, lf.T_JOIN_REFUSED, lf.T_TIME_SYNC, lf.T_HEARTBEAT, lf.T_OTA_CHUNK, lf.T_RAW]
    assert len(set(types)) == 12
    for t in types:
        assert t in lf.TYPE_NAMES
        assert _parse(lf.build(t, 0, 0, 0, 0, b""))[0] == 0
