# Link core on the fake air with a fake clock: exactly-once delivery under loss/dup/reorder, command
# results in ACKs, retry/backoff schedule, replay counters across reboots, fragmentation limits,
# garbage frames, 200 nodes through a 20-peer radio.
from devtest import raises, tmpdir
from test_link_fakeradio import FakeAir, FakeClock, Rng, drive, mac

from fieldlink.link import frame as lf
from fieldlink.codec import mpack
from fieldlink.link.gateway_link import GatewayLink
from fieldlink.link.core import LinkError
from fieldlink.link.node_link import NodeLink
from fieldlink.link.peers import SEC_AUTH, SEC_ESPNOW

GW = mac(0xF00)
N1 = mac(1)
KEY = b"0123456789abcdef"


def _net(seed=1, loss=0.0, dup=0.0, reorder=0.0, corrupt=0.0, key=None, sec=SEC_AUTH, gstore=None,
         nstore=None, **kw):
    c = FakeClock(1000)
    air = FakeAir(c, seed, loss, dup, reorder, corrupt)
    pmk = b"P" * 16 if key is not None else None
    gw = GatewayLink(air.radio(GW), GW, clock=c, seed=seed, boot_id=1, pmk=pmk, store=gstore,
                     beacon_closed_ms=60000, **kw)
    node = NodeLink(air.radio(N1), N1, clock=c, seed=seed + 1, boot_id=7, pmk=pmk, store=nstore, **kw)
    if key is not None and not node.paired:
        _pair(gw, node, key, sec)
    return c, air, gw, node


def _pair(gw, node, key, sec):
    node._adopt(GW, 1, key, sec)
    node._save_pair()
    gw.add_node(node.mac, key, sec)


def _pump(c, links, txs, max_ms=60000):
    return drive(c, links, lambda: all(t.done for t in txs), max_ms)


def _submit_all(c, src, dst, links, objs, mtype=lf.T_TELEMETRY):
    """Submit objs in order, never more than max_inflight at once; returns the Tx list."""
    txs = []
    for o in objs:
        while True:
            try:
                txs.append(src.submit(dst, mtype, o))
                break
            except LinkError:
                for lk in links:
                    lk.service()
                c.advance(1)
    _pump(c, links, txs)
    return txs


def test_telemetry_exactly_once_under_loss_dup_reorder():
    c, air, gw, node = _net(seed=3, loss=0.2, dup=0.1, reorder=0.2, max_tries=8)
    got = []
    gw.on(lf.T_TELEMETRY, lambda src, t, obj, mid: got.append(obj["i"]))
    txs = _submit_all(c, node, GW, [gw, node], [{"i": i} for i in range(200)])
    assert all(t.status == lf.ST_OK or t.status == lf.ST_DUP for t in txs)
    assert sorted(got) == list(range(200))              # every message applied exactly once
    assert node.counters["retries"] > 0 and gw.counters["duplicate"] > 0
    assert node.counters["give_up"] == 0 and air.dropped > 0


def test_commands_applied_once_and_result_in_ack():
    c, air, gw, node = _net(seed=11, loss=0.2, dup=0.2, reorder=0.1, key=KEY, max_tries=8)
    applied = {}

    def cmd(src, t, obj, mid):
        applied[obj["x"]] = applied.get(obj["x"], 0) + 1
        return {"ok": obj["x"] * 2, "mid": mid}

    node.on(lf.T_COMMAND, cmd)
    txs = []
    for i in range(60):
        tx = gw.submit(N1, lf.T_COMMAND, {"x": i}, True, 1000 + i)
        # commands to one peer go one at a time (counters must arrive in increasing order)
        e = raises(LinkError, gw.submit, N1, lf.T_COMMAND, {"x": -1})
        assert "busy" in str(e) and e.status == lf.ST_BUSY
        txs.append(tx)
        _pump(c, [gw, node], [tx])
    assert applied == dict((i, 1) for i in range(60))
    for i, t in enumerate(txs):
        assert t.status in (lf.ST_OK, lf.ST_DUP)
        assert t.result == {"ok": i * 2, "mid": 1000 + i}
    assert node.counters["replay"] == 0 and node.counters["bad_auth"] == 0


def test_retry_schedule_exponential_and_capped():
    for cap, want_times, want_end in ((1000, [0, 50, 150, 350, 750], 1550), (300, [0, 50, 150, 350, 650], 950)):
        c, air, gw, node = _net(jitter=False, cap_ms=cap)
        air.radios[GW].deaf = True
        t0 = c()
        done_at = []
        tx = node.submit(GW, lf.T_EVENT, "e", cb=lambda tx: done_at.append(c()))
        _pump(c, [gw, node], [tx])
        times = [t - t0 for (t, dst, f) in air.radios[N1].log if dst == GW]
        assert times == want_times, times
        assert done_at[0] - t0 == want_end
        assert tx.status is None and node.counters["retries"] == 4 and node.counters["give_up"] == 1


def test_backoff_jitter_is_seeded_and_bounded():
    c = FakeClock()
    air = FakeAir(c)
    a = NodeLink(air.radio(mac(1)), mac(1), clock=c, seed=5, boot_id=0)
    b = NodeLink(air.radio(mac(2)), mac(2), clock=c, seed=5, boot_id=0)
    d = NodeLink(air.radio(mac(3)), mac(3), clock=c, seed=6, boot_id=0)
    sa = [a.backoff(k) for k in range(1, 6)]
    assert sa == [b.backoff(k) for k in range(1, 6)]
    assert sa != [d.backoff(k) for k in range(1, 6)]
    for k, v in zip(range(1, 6), sa):
        base = min(1000, 50 << (k - 1))
        assert base <= v <= base + base // 4


def test_send_async_returns_result_and_raises_on_error():
    import asyncio

    c, air, gw, node = _net(key=KEY)
    node.clock = gw.clock = c

    def bad(src, t, obj, mid):
        raise ValueError("relay 9 does not exist")

    node.on(lf.T_COMMAND, lambda src, t, obj, mid: obj + 1)
    node.on(lf.T_EVENT, bad)

    async def ticker():
        while True:
            c.advance(1)
            gw.service()
            node.service()
            await asyncio.sleep(0)

    async def main():
        task = asyncio.create_task(ticker())
        r = await gw.send(N1, lf.T_COMMAND, 41)
        e = None
        try:
            await gw.send(N1, lf.T_EVENT, 1)
        except LinkError as ex:
            e = ex
        task.cancel()
        return r, e

    r, e = asyncio.run(main())
    assert r == 42
    assert e is not None and e.status == lf.ST_ERROR and "relay 9" in e.result
    assert node.counters["handler_error"] == 1


def test_replay_refused_and_counters_survive_reboot():
    gs, ns = tmpdir("gw"), tmpdir("node")
    c, air, gw, node = _net(key=KEY, gstore=gs, nstore=ns)
    seen = []
    node.on(lf.T_COMMAND, lambda src, t, obj, mid: seen.append(obj))
    for i in range(3):
        _pump(c, [gw, node], [gw.submit(N1, lf.T_COMMAND, i)])
    assert seen == [0, 1, 2] and node.table.get(GW).ctr_rx == 3

    def forged(ctr, seq):   # a captured/forged command with a valid tag but an old counter
        return lf.build(lf.T_COMMAND, lf.F_ACK_REQ | lf.F_CTR, 1, seq, 0, mpack.packb("evil"), ctr, 0, 0, KEY)

    node.feed(GW, forged(2, 500))
    node.feed(GW, forged(3, 501))
    assert node.counters["replay"] == 2 and seen == [0, 1, 2]
    # reboot both ends: the node keeps the last counter, the gateway continues above what it used
    air2 = FakeAir(c)
    gw2 = GatewayLink(air2.radio(GW), GW, clock=c, boot_id=2, pmk=b"P" * 16, store=gs, beacon_closed_ms=60000)
    node2 = NodeLink(air2.radio(N1), N1, clock=c, boot_id=8, pmk=b"P" * 16, store=ns)
    assert node2.paired and node2.gateway == GW and gw2.nodes() == [N1]
    seen2 = []
    node2.on(lf.T_COMMAND, lambda src, t, obj, mid: seen2.append(obj))
    node2.feed(GW, forged(3, 1))
    assert node2.counters["replay"] == 1 and seen2 == []
    tx = gw2.submit(N1, lf.T_COMMAND, "after reboot")
    _pump(c, [gw2, node2], [tx])
    assert tx.status == lf.ST_OK and seen2 == ["after reboot"]
    assert node2.table.get(GW).ctr_rx > 3
    # a command without a counter is a replay too
    node2.feed(GW, lf.build(lf.T_COMMAND, 0, 2, 77, 0, mpack.packb("x"), 0, 0, 0, KEY))
    assert node2.counters["replay"] == 2 and seen2 == ["after reboot"]


def test_replay_ack_stops_sender_retries():
    c, air, gw, node = _net(key=KEY)
    node.on(lf.T_COMMAND, lambda *a: None)
    node.table.get(GW).ctr_rx = 10**6          # node has seen a higher counter than the gateway will use
    tx = gw.submit(N1, lf.T_COMMAND, "x")
    _pump(c, [gw, node], [tx])
    assert tx.status == lf.ST_REPLAY and gw.counters["retries"] == 0
    e = raises(LinkError, lambda: (_ for _ in ()).throw(LinkError("x", tx.status)))
    assert e.status == lf.ST_REPLAY


def test_fragmented_message_over_lossy_air():
    c, air, gw, node = _net(seed=5, loss=0.1, dup=0.1, reorder=0.3, key=KEY, max_tries=8)
    got = []
    gw.on(lf.T_EVENT, lambda src, t, obj, mid: got.append(obj))
    blobs = [bytes((i * 31 + j) & 0xFF for j in range(1500)) for i in range(5)]
    txs = [node.submit(GW, lf.T_EVENT, {"blob": b}) for b in blobs]
    assert len(txs[0].frames) == 7   # 1500 + map overhead over 250-byte frames with auth + frag fields
    for f in txs[0].frames:
        assert len(f) <= 250
    _pump(c, [gw, node], txs)
    assert sorted(g["blob"] for g in got) == blobs   # each exactly once (parallel: any order)
    assert gw.rx.reasm.used == 0 and not gw.rx.reasm.slots


def test_reassembly_limits_counted():
    c, air, gw, node = _net(max_msg=1000, reasm_timeout_ms=500)
    chunk = bytes(200)

    def frag(seq, i, n, data=chunk):
        return lf.build(lf.T_EVENT, lf.F_FRAG, 7, seq, 0, data, 0, i, n)

    for i in range(6):                       # 6 x 200 > max_msg 1000
        gw.feed(N1, frag(1, i, 6))
    assert gw.counters["oversize"] == 1
    gw.feed(N1, frag(2, 0, 17))              # above max_frags 16
    assert gw.counters["too_many_frags"] == 1
    gw.feed(N1, frag(3, 0, 3))
    gw.feed(N1, frag(3, 0, 3))
    assert gw.counters["duplicate"] == 1
    c.advance(499)
    gw.poll()
    assert gw.counters["reasm_timeout"] == 0
    c.advance(1)
    gw.poll()
    assert gw.counters["reasm_timeout"] == 1 and gw.rx.reasm.used == 0
    # sender side: too big to send at all
    e = raises(LinkError, node.submit, GW, lf.T_EVENT, bytes(3000))
    assert "max_msg" in str(e) and node.counters["oversize"] == 1


def test_garbage_frames_counted_link_keeps_working():
    c, air, gw, node = _net(key=KEY)
    other = mac(77)
    g = gw.counters
    good = lf.build(lf.T_EVENT, 0, 7, 1, 0, mpack.packb(1), 0, 0, 0, KEY)
    cases = [
        (b"", "short"), (b"\x01\x01", "short"), (b"\x02" + good[1:], "bad_version"),
        (b"\x01\x0d" + good[2:], "unknown_type"), (b"\x01\x01\x40" + good[3:], "bad_flags"),
        (bytes([1, 1, 2, 0, 0, 1, 0, 0, 5, 2]), "bad_fragment"),
        (good[:-1] + bytes([good[-1] ^ 1]), "bad_auth"),
        (lf.build(lf.T_EVENT, 0, 7, 2, 0, mpack.packb(1)), "bad_auth"),           # unsigned
        (lf.build(lf.T_EVENT, 0, 7, 3, 0, b"\xc1", 0, 0, 0, KEY), "bad_msgpack"),
        (lf.build(lf.T_EVENT, 0, 7, 4, 0, b"\x92\x01", 0, 0, 0, KEY), "bad_msgpack"),
        (lf.build(lf.T_ACK, 0, 7, 0, 999, mpack.packb([0, None]), 0, 0, 0, KEY), "stray_ack"),
    ]
    for frame, name in cases:
        before = g[name]
        gw.feed(N1, frame)
        assert g[name] == before + 1, name
    gw.feed(other, good)
    assert g["unknown_peer"] == 1
    rng = Rng(99)
    for _ in range(300):
        n = rng.below(260)
        junk = bytes(rng.below(256) for _ in range(n))
        if rng.chance(0.5) and n > 3:
            junk = b"\x01" + bytes([rng.below(16)]) + bytes([rng.below(16)]) + junk[3:]
        gw.feed(N1, junk)
        gw.feed(other, junk)
    assert g["rx_msgs"] == 0
    got = []
    gw.on(lf.T_EVENT, lambda src, t, obj, mid: got.append(obj))
    tx = node.submit(GW, lf.T_EVENT, "still alive")
    _pump(c, [gw, node], [tx])
    assert got == ["still alive"] and tx.status == lf.ST_OK


def test_garbage_on_air_with_corruption():
    c, air, gw, node = _net(seed=21, corrupt=0.3, loss=0.05, key=KEY, max_tries=10)
    got = []
    gw.on(lf.T_TELEMETRY, lambda src, t, obj, mid: got.append(obj))
    txs = _submit_all(c, node, GW, [gw, node], list(range(40)))
    assert sorted(got) == list(range(40)) and all(t.status is not None for t in txs)
    assert gw.counters["bad_auth"] + gw.counters["bad_version"] + gw.counters["unknown_type"] > 0


def test_inflight_limit_busy():
    c, air, gw, node = _net(max_inflight=3)
    for i in range(3):
        node.submit(GW, lf.T_EVENT, i)
    e = raises(LinkError, node.submit, GW, lf.T_EVENT, 3)
    assert "busy" in str(e) and e.status == lf.ST_BUSY and node.counters["busy"] == 1
    node.submit(GW, lf.T_EVENT, 4, ack=False)   # fire-and-forget is not limited


def test_gateway_serves_200_nodes_on_20_peer_radio():
    c = FakeClock(1000)
    air = FakeAir(c, seed=4, loss=0.05)
    pmk = b"P" * 16
    gr = air.radio(GW)
    gw = GatewayLink(gr, GW, clock=c, boot_id=1, pmk=pmk, beacon_closed_ms=60000, max_tries=8)
    nodes = []
    applied = {}
    for i in range(1, 201):
        n = NodeLink(air.radio(mac(i)), mac(i), clock=c, seed=i, boot_id=3, pmk=pmk, max_tries=8)
        _pair(gw, n, bytes([i]) * 16, SEC_ESPNOW if i <= 6 else SEC_AUTH)
        n.on(lf.T_COMMAND, lambda src, t, obj, mid: applied.__setitem__(obj, applied.get(obj, 0) + 1) or obj)
        nodes.append(n)
    got = []
    gw.on(lf.T_TELEMETRY, lambda src, t, obj, mid: got.append((src, obj)))
    links = [gw] + nodes
    txs = [gw.submit(n.mac, lf.T_COMMAND, i) for i, n in enumerate(nodes)]
    txs += [n.submit(GW, lf.T_TELEMETRY, i) for i, n in enumerate(nodes)]
    peak = [0]

    def until():
        peak[0] = max(peak[0], len(gr.peers))
        return all(t.done for t in txs)

    drive(c, links, until, 60000, 2)
    assert all(t.status == lf.ST_OK or t.status == lf.ST_DUP for t in txs)
    assert applied == dict((i, 1) for i in range(200))
    assert sorted(o for s, o in got) == list(range(200))
    assert peak[0] <= 20 and gw.counters["evictions"] > 100
    assert gr.undecryptable == 0 and gw.reg.n_encrypted() == 6
    assert len(gw.nodes()) == 200


def test_broadcast_is_unsequenced_and_signed_with_pmk():
    c, air, gw, node = _net(key=KEY)
    n2 = NodeLink(air.radio(mac(2)), mac(2), clock=c, boot_id=3, pmk=b"P" * 16)
    _pair(gw, n2, b"K2" * 8, SEC_AUTH)
    got = []
    for n in (node, n2):
        n.on(lf.T_TIME_SYNC, lambda src, t, obj, mid: got.append(obj))
    for ts in (5, 5):                                   # the same broadcast twice: both delivered
        tx = gw.submit(b"\xff" * 6, lf.T_TIME_SYNC, {"ts": ts}, ack=True)
        assert tx.done and not tx.frames[0][2] & lf.F_ACK_REQ and tx.frames[0][4:6] == b"\x00\x00"
    drive(c, [gw, node, n2], lambda: len(got) == 4, 100)
    assert got == [{"ts": 5}] * 4 and node.counters["duplicate"] == 0
    # an unsequenced frame signed with something else is rejected; a big broadcast is refused
    node.feed(GW, lf.build(lf.T_TIME_SYNC, 0, 1, 0, 0, mpack.packb(1), 0, 0, 0, b"Q" * 16))
    assert node.counters["bad_auth"] == 1 and len(got) == 4
    e = raises(LinkError, gw.submit, b"\xff" * 6, lf.T_EVENT, bytes(400))
    assert "one frame" in str(e)


def test_sequence_wraps_and_skips_zero():
    c, air, gw, node = _net()
    got = []
    gw.on(lf.T_EVENT, lambda src, t, obj, mid: got.append(obj))
    p = node.table.add(GW)
    p.tx_seq = 65534
    txs = [node.submit(GW, lf.T_EVENT, i) for i in range(3)]
    assert [t.seq for t in txs] == [65535, 1, 2]
    _pump(c, [gw, node], txs)
    assert got == [0, 1, 2] and all(t.status == lf.ST_OK for t in txs)
