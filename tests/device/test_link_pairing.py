# Pairing on the fake air in real (asyncio) time: permit-join window open/closed, key delivery,
# remembered pairing, rescan after the gateway changes channel, 6 native-encrypted slots.
import asyncio

from devtest import tmpdir
from test_link_fakeradio import FakeAir, FakeWLAN, mac

from fieldlink.link import frame as lf
from fieldlink.codec import mpack
from fieldlink.link.gateway_link import GatewayLink
from fieldlink.link.core import LinkError, ticks_ms
from fieldlink.link.node_link import NodeLink
from fieldlink.link.pairing import wrap_key
from fieldlink.link.peers import SEC_AUTH, SEC_ESPNOW

GW = mac(0xF00)
PMK = b"network-pmk-0001"
FAST = {"base_ms": 10, "cap_ms": 40, "max_tries": 3, "idle_ms": 2}


def _gateway(air, store=None, channel=6, **kw):
    r = air.radio(GW)
    return GatewayLink(r, GW, wlan=FakeWLAN(r, channel), channel=channel, pmk=PMK, net_id=5, store=store,
                       beacon_open_ms=10, beacon_closed_ms=30, **dict(FAST, **kw))


def _node(air, i, store=None, pmk=PMK, **kw):
    r = air.radio(mac(i))
    return NodeLink(r, mac(i), wlan=FakeWLAN(r, 1), pmk=pmk, net_id=5, store=store, dwell_ms=25,
                    rescan_dwell_ms=45, join_retry_ms=40, **dict(FAST, **kw))


def _run(coro):
    return asyncio.run(coro)


def test_wrap_key_roundtrip():
    key = bytes(range(16))
    w = wrap_key(PMK, mac(1), b"12345678", key)
    assert w != key and len(w) == 16
    assert wrap_key(PMK, mac(1), b"12345678", w) == key
    assert wrap_key(PMK, mac(2), b"12345678", w) != key


def test_join_refused_when_window_closed_then_accepted_in_window():
    async def main():
        air = FakeAir(ticks_ms, seed=1)
        gw = _gateway(air, tmpdir("gw"))
        node = _node(air, 1, tmpdir("n"))
        t = asyncio.create_task(gw.run())
        # closed window: closed-window beacons are not joinable, the scan finds nothing
        node.channels = [5, 6, 7]
        assert not await node.join(400)
        node.channels = list(range(1, 14))
        assert node.counters["beacons_rx"] > 0 and not node.paired
        # window open when the beacon is seen but closed before the JOIN_REQ arrives -> refused
        gw.permit_join(5)
        orig = node._scan

        async def scan_then_close(*a):
            r = await orig(*a)
            gw.permit_join(0)
            return r

        node._scan = scan_then_close
        assert not await node.join(2000)
        assert node.counters["join_refused"] == 1 and gw.counters["join_refused"] >= 1
        assert not node.paired and gw.nodes() == []
        del node._scan
        gw.permit_join(5)
        joined = []
        gw.on_join = joined.append
        assert await node.join(3000)
        assert node.paired and node.gateway == GW and node.channel == 6 and joined == [mac(1)]
        gp = gw.table.get(mac(1))
        assert node.table.get(GW).key == gp.key and len(gp.key) == 16
        assert gp.sec == SEC_ESPNOW and node.table.get(GW).sec == SEC_ESPNOW
        got = []
        gw.on(lf.T_TELEMETRY, lambda src, ty, obj, mid: got.append((src, obj)))
        nt = asyncio.create_task(node.run())
        await node.send_gw(lf.T_TELEMETRY, {"temp": 21})
        node.stop()
        gw.stop()
        await asyncio.sleep(0.02)
        t.cancel()
        nt.cancel()
        return got, air

    got, air = _run(main())
    assert got == [(mac(1), {"temp": 21})]
    assert air.radios[GW].undecryptable == 0


def test_join_needs_the_network_pmk():
    async def main():
        air = FakeAir(ticks_ms, seed=2)
        gw = _gateway(air)
        intruder = _node(air, 9, pmk=b"wrong-pmk-000000")
        gw.permit_join(5)
        t = asyncio.create_task(gw.run())
        ok = await intruder.join(3000)  # long enough to hear beacons on a loaded machine
        gw.stop()
        await asyncio.sleep(0.01)
        t.cancel()
        return ok, gw, intruder

    ok, gw, intruder = _run(main())
    assert not ok and gw.nodes() == []
    assert intruder.counters["bad_auth"] > 0          # beacons do not verify with the wrong PMK


def test_remembered_pairing_and_rescan_after_channel_change():
    gs, ns = tmpdir("gw"), tmpdir("n")

    async def main():
        air = FakeAir(ticks_ms, seed=3)
        gw = _gateway(air, gs)
        node = _node(air, 1, ns)
        gw.permit_join(5)
        gt = asyncio.create_task(gw.run())
        assert await node.join(3000)
        # "reboot" the node: the pairing comes back from the store, no scan needed
        air.radios.pop(mac(1))
        node2 = _node(air, 1, ns, fail_limit=1)
        assert node2.paired and node2.gateway == GW and node2.channel == 6 and node2.boot_id != node.boot_id
        got = []
        gw.on(lf.T_EVENT, lambda src, ty, obj, mid: got.append(obj))
        nt = asyncio.create_task(node2.run())
        assert await node2.send_gw(lf.T_EVENT, "before") is None
        gw.set_channel(11)               # the gateway moves; the node's next message gets no ACK
        failed = False
        try:
            await node2.send_gw(lf.T_EVENT, "lost")
        except LinkError as e:
            failed = e.status is None
        assert failed
        for _ in range(300):             # run() notices and rescans channels 1..13
            if not node2.lost and node2.channel == 11:
                break
            await asyncio.sleep(0.01)
        assert node2.channel == 11 and not node2.lost and node2.counters["rescans"] >= 1
        await node2.send_gw(lf.T_EVENT, "after")
        node2.stop()
        gw.stop()
        await asyncio.sleep(0.02)
        gt.cancel()
        nt.cancel()
        return got

    got = _run(main())
    assert got == ["before", "after"]
    import json
    with open(ns + "/pair.json") as f:
        assert json.load(f)["ch"] == 11


def test_seventh_native_node_falls_back_to_hmac():
    async def main():
        air = FakeAir(ticks_ms, seed=4)
        gw = _gateway(air)
        gw.permit_join(30)
        gt = asyncio.create_task(gw.run())
        nodes = []
        for i in range(1, 8):
            n = _node(air, i)
            n.channels = [6]
            assert await n.join(2000)
            nodes.append(n)
        got = []
        gw.on(lf.T_TELEMETRY, lambda src, ty, obj, mid: got.append(obj))
        tasks = [asyncio.create_task(n.run()) for n in nodes]
        for i, n in enumerate(nodes):
            await n.send_gw(lf.T_TELEMETRY, i)
        for n in nodes:
            n.stop()
        gw.stop()
        await asyncio.sleep(0.02)
        gt.cancel()
        for t in tasks:
            t.cancel()
        return gw, nodes, got, air

    gw, nodes, got, air = _run(main())
    secs = [n.table.get(GW).sec for n in nodes]
    assert secs == [SEC_ESPNOW] * 6 + [SEC_AUTH]
    assert [gw.table.get(n.mac).sec for n in nodes] == secs
    assert gw.reg.n_encrypted() == 6 and sorted(got) == list(range(7))
    assert air.radios[GW].undecryptable == 0


def test_pairing_frames_from_other_networks_ignored():
    air = FakeAir(ticks_ms)
    node = _node(air, 1)
    body = mpack.packb([6, 1, GW, True])           # net id 6, we are 5
    node._want = b"open"
    node.feed(GW, lf.build(lf.T_BEACON, 0, 0, 0, 0, body, 0, 0, 0, PMK))
    assert node.counters["wrong_net"] == 1 and node._beacon is None
    node.feed(GW, lf.build(lf.T_BEACON, 0, 0, 0, 0, mpack.packb([5, 1, GW, True]), 0, 0, 0, PMK))
    assert node._beacon == (GW, 1)
