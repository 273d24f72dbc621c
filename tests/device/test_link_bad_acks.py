# ACKs whose body is valid msgpack but not [status u8, result] (a string or float status, a map, a
# short list, a status > 255) are counted as bad_msgpack and dropped: the message stays in flight and
# completes with the real ACK; nothing raises TypeError (before: Link.send raised TypeError formatting
# the status). Beacons and JOIN_ACCEPTs with a non-integer channel are dropped the same way.
from test_link_core import GW, KEY, _net, _pump

from fieldlink.codec import mpack
from fieldlink.link import frame as lf

BAD_BODIES = [["x", None], [1.5, None], [None, None], [True, None], [300, None], [-1, None], [0],
              [0, None, 1], {0: 1, 2: 3}, 5, "ok", b"\x00\x01"]


def test_malformed_acks_are_counted_and_the_real_ack_completes():
    c, air, gw, node = _net(key=KEY)
    tx = node.submit(GW, lf.T_EVENT, "hello")
    before = node.counters["bad_msgpack"]
    for body in BAD_BODIES:
        node.feed(GW, lf.build(lf.T_ACK, 0, 7, 0, tx.seq, mpack.packb(body), 0, 0, 0, KEY))
    assert node.counters["bad_msgpack"] == before + len(BAD_BODIES)
    assert not tx.done
    got = []
    gw.on(lf.T_EVENT, lambda src, t, obj, mid: got.append(obj))
    _pump(c, [gw, node], [tx])
    assert got == ["hello"] and tx.status == lf.ST_OK


def test_beacon_with_bad_channel_is_dropped():
    c, air, gw, node = _net()
    node._want = b"open"
    before = node.counters["bad_msgpack"]
    for ch in ("1", 1.0, 0, 15, None, [1]):
        f = lf.build(lf.T_BEACON, 0, 1, 0, 0, mpack.packb([0, ch, GW, True]), 0, 0, 0)
        node.feed(GW, f)
        assert node._beacon is None
    assert node.counters["bad_msgpack"] == before + 6
    node.feed(GW, lf.build(lf.T_BEACON, 0, 1, 0, 0, mpack.packb([0, 6, GW, True]), 0, 0, 0))
    assert node._beacon == (GW, 6)
