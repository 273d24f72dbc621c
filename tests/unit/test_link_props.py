# CPython-only property tests for the link frame codec and HMAC (cross-checked with the stdlib hmac).
import hashlib
import hmac

from fieldlink.link import frame as lf
from fieldlink.link.peers import D_NEW, Peer
from hypothesis import given
from hypothesis import strategies as st

TYPES = sorted(lf.TYPE_NAMES)


@given(st.binary(max_size=100), st.binary(max_size=300))
def test_hmac_matches_stdlib(key, msg):
    assert lf.hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()


@given(st.sampled_from(TYPES), st.integers(0, 15), st.integers(0, 255), st.integers(0, 0xFFFF),
       st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF), st.integers(1, 32), st.data(),
       st.one_of(st.none(), st.binary(min_size=1, max_size=32)))
def test_header_roundtrip(mtype, flags, boot, seq, msgid, ctr, fcnt, data, key):
    flags &= lf.F_ACK_REQ | lf.F_FRAG | lf.F_CTR
    fidx = data.draw(st.integers(0, fcnt - 1))
    room = lf.MAX_FRAME - lf.overhead(flags | (lf.F_AUTH if key else 0))
    body = data.draw(st.binary(max_size=room))
    f = lf.build(mtype, flags, boot, seq, msgid, body, ctr, fidx, fcnt, key)
    assert len(f) <= lf.MAX_FRAME
    h = lf.Header()
    assert lf.parse(f, len(f), h) == 0
    assert (h.mtype, h.boot, h.seq, h.msgid) == (mtype, boot, seq, msgid)
    assert f[h.body:h.end] == body
    if flags & lf.F_CTR:
        assert h.ctr == ctr
    if flags & lf.F_FRAG:
        assert (h.fidx, h.fcnt) == (fidx, fcnt)
    if key:
        assert lf.check_tag(key, f, len(f))


@given(st.binary(max_size=260))
def test_parse_never_raises(junk):
    h = lf.Header()
    assert lf.parse(junk, len(junk), h) in range(6)


@given(st.lists(st.integers(0, 0xFFFF), max_size=300))
def test_dedup_window_matches_reference_set(seqs):
    # reference: a sequence is new iff not marked before and not >= window behind the newest mark
    p = Peer(b"m", window=64)
    marked = []
    hi = None
    for s in seqs:
        if hi is None:
            ref_new = True
        else:
            behind = (hi - s) & 0xFFFF
            ahead = (s - hi) & 0xFFFF
            if s == hi:
                ref_new = False
            elif 0 < ahead < 0x8000:
                ref_new = True
            elif behind >= 64:
                ref_new = False
            else:
                ref_new = s not in marked
        assert (p.check(s) == D_NEW) == ref_new
        if ref_new:
            p.mark(s)
            marked.append(s)
            if hi is None or 0 < ((s - hi) & 0xFFFF) < 0x8000:
                hi = s
                marked = [m for m in marked if ((hi - m) & 0xFFFF) < 64]
