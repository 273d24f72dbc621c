# Command results larger than one ESP-NOW frame (a node's `status`, ~300 bytes) come back in ACK
# fragments. Regression: the first run over the real virtual air answered every `status` command with
# ST_ERROR "result too large", because an ACK had to fit in one frame.
from test_link_fakeradio import FakeAir, FakeClock, drive, mac

from fieldlink.link import frame as lf
from fieldlink.link.gateway_link import GatewayLink
from fieldlink.link.node_link import NodeLink
from fieldlink.link.peers import SEC_AUTH

GW = mac(0xF00)
N1 = mac(1)
KEY = b"0123456789abcdef"


def _net(seed=1, loss=0.0, dup=0.0, key=KEY, **kw):
    c = FakeClock(1000)
    air = FakeAir(c, seed, loss, dup, 0.0, 0.0)
    pmk = b"P" * 16 if key is not None else None
    gw = GatewayLink(air.radio(GW), GW, clock=c, seed=seed, boot_id=1, pmk=pmk, beacon_closed_ms=60000, **kw)
    node = NodeLink(air.radio(N1), N1, clock=c, seed=seed + 1, boot_id=7, pmk=pmk, **kw)
    if key is not None:
        node._adopt(GW, 1, key, SEC_AUTH)
        gw.add_node(N1, key, SEC_AUTH, False)
    return c, air, gw, node


def _big(i):
    return {"ok": True, "i": i, "c": {"counter_%02d" % k: k * 1000 + i for k in range(40)}}


def _run(c, gw, node, n, expect_applied=None):
    applied = []

    def cmd(src, t, obj, mid):
        applied.append(obj["i"])
        return _big(obj["i"])

    node.on(lf.T_COMMAND, cmd)
    results = []
    for i in range(n):
        tx = gw.submit(N1, lf.T_COMMAND, {"i": i}, True, 100 + i)
        drive(c, [gw, node], lambda: tx.done, 60000)
        results.append((tx.status, tx.result))
    return applied, results


def test_large_result_comes_back_in_fragments():
    c, air, gw, node = _net()
    applied, results = _run(c, gw, node, 3)
    assert applied == [0, 1, 2]
    for i, (st, res) in enumerate(results):
        assert st == lf.ST_OK, (st, res)
        assert res == _big(i)
    assert node.counters["acks_tx"] == 3
    assert gw.counters["acks_rx"] == 3 and gw.counters["give_up"] == 0


def test_large_result_under_loss_and_dup_applied_once():
    c, air, gw, node = _net(seed=5, loss=0.2, dup=0.1, max_tries=10)
    applied, results = _run(c, gw, node, 25)
    assert applied == list(range(25))          # retries of a partly lost ACK never re-run the command
    for i, (st, res) in enumerate(results):
        assert st in (lf.ST_OK, lf.ST_DUP), (i, st, res)
        assert res == _big(i), (i, st, res)    # a duplicate is answered with the cached result
    assert gw.counters["retries"] > 0 and node.counters["duplicate"] > 0


def test_open_network_and_result_beyond_max_msg():
    c, air, gw, node = _net(key=None, max_msg=600)
    applied = []

    def cmd(src, t, obj, mid):
        applied.append(1)
        return {"blob": bytes(obj["n"])}

    node.on(lf.T_COMMAND, cmd)
    tx = gw.submit(N1, lf.T_COMMAND, {"n": 400}, True, 1)
    drive(c, [gw, node], lambda: tx.done, 60000)
    assert tx.status == lf.ST_OK and tx.result == {"blob": bytes(400)}
    tx = gw.submit(N1, lf.T_COMMAND, {"n": 900}, True, 2)   # result above max_msg: refused, not sent
    drive(c, [gw, node], lambda: tx.done, 60000)
    assert tx.status == lf.ST_ERROR and tx.result == "result too large"
    assert applied == [1, 1]


# ------------------------------------------------------------------------------------------ resend
# Regression (exactly-once over the air): when all tries of a command went unacknowledged, the gateway
# kept it queued and later sent it as a NEW link message (new sequence, new counter), so a node that had
# applied it (only its ACKs were lost) applied it a second time. Link.resend(tx) repeats the same frames.
import asyncio  # noqa: E402

from fieldlink.link.core import LinkError  # noqa: E402


def _drive_async(c, links, coro, max_ms=60000):
    out = []

    async def wrap():
        out.append(await coro)

    async def main():
        task = asyncio.create_task(wrap())
        t0 = c()
        while not out:
            if c() - t0 > max_ms:
                raise AssertionError("not done within %d ms" % max_ms)
            for lk in links:
                lk.service()
            c.advance(1)
            await asyncio.sleep(0)
        await task
    asyncio.run(main())
    return out[0]


def test_resend_after_give_up_is_not_applied_twice():
    c, air, gw, node = _net(seed=9, max_tries=3)
    applied = []

    def cmd(src, t, obj, mid):
        applied.append(obj["i"])
        return {"ok": True, "n": len(applied)}

    node.on(lf.T_COMMAND, cmd)
    air.link_loss[(N1, GW)] = 1.0          # the node hears the command, its ACKs never arrive

    async def first():
        try:
            await gw.send(N1, lf.T_COMMAND, {"i": 1}, True, 77)
        except LinkError as e:
            return e
        return None

    err = _drive_async(c, [gw, node], first())
    assert err is not None and err.status is None and err.tx is not None
    assert applied == [1] and gw.counters["give_up"] == 1
    air.link_loss.clear()
    res = _drive_async(c, [gw, node], gw.resend(err.tx))
    assert res == {"ok": True, "n": 1}         # the cached result of the first (only) application
    assert applied == [1] and node.counters["duplicate"] >= 1 and node.counters["replay"] == 0
    # the link is usable afterwards: the next command is new and applied
    res = _drive_async(c, [gw, node], gw.send(N1, lf.T_COMMAND, {"i": 2}, True, 78))
    assert res == {"ok": True, "n": 2} and applied == [1, 2]


def test_resend_of_a_command_never_received_applies_it_once():
    c, air, gw, node = _net(seed=10, max_tries=2)
    applied = []
    node.on(lf.T_COMMAND, lambda src, t, obj, mid: applied.append(obj["i"]) or {"ok": True})
    air.link_loss[(GW, N1)] = 1.0          # the command itself is lost

    async def first():
        try:
            await gw.send(N1, lf.T_COMMAND, {"i": 5}, True, 1)
        except LinkError as e:
            return e

    err = _drive_async(c, [gw, node], first())
    assert applied == [] and err.tx is not None
    air.link_loss.clear()
    assert _drive_async(c, [gw, node], gw.resend(err.tx)) == {"ok": True}
    assert applied == [5]


def test_resend_needs_the_same_key_and_a_recent_sequence():
    c, air, gw, node = _net(seed=11, max_tries=2)
    node.on(lf.T_COMMAND, lambda src, t, obj, mid: {"ok": True})
    air.link_loss[(N1, GW)] = 1.0

    async def fail(i):
        try:
            await gw.send(N1, lf.T_COMMAND, {"i": i}, True, i)
        except LinkError as e:
            return e

    err = _drive_async(c, [gw, node], fail(1))
    assert err.tx is not None and gw.can_resend(err.tx)
    peer = gw.table.get(N1)
    peer.key = b"K" * 16                   # re-keyed since (paired again): the old tags would be dropped
    assert not gw.can_resend(err.tx)

    async def resend():
        try:
            await gw.resend(err.tx)
        except LinkError as e:
            return e

    e = _drive_async(c, [gw, node], resend())
    assert e.status == lf.ST_DENIED and gw.counters["retries"] == err.tx.tries - 1   # nothing sent
    peer.key = KEY
    assert gw.can_resend(err.tx)
    peer.tx_seq = (err.tx.seq + 31) & 0xFFFF   # 31 newer messages since: still inside half the window
    assert gw.can_resend(err.tx)
    peer.tx_seq = (err.tx.seq + 32) & 0xFFFF   # 32: it could fall behind the receiver's window
    assert not gw.can_resend(err.tx)
    assert not gw.can_resend(gw.submit(N1, lf.T_EVENT, {}, False))   # no ACK requested: nothing to repeat
