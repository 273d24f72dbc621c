# Gateway role and its serial uplink, with in-memory fakes for the radio (FakeLink) and the serial line
# (FakeSerial). Runs under CPython and MicroPython.
import json

from devtest import raises

from test_node_support import (GW_CFG, Clock, FakeAir, FakeLink, FakeSerial, asyncio, pump, run)

from fieldlink.codec import mpack
from fieldlink.codec.serialframe import encode_frame
from fieldlink.gateway.role import Gateway, mac_bytes, mac_hex
from fieldlink.link.core import T_HEARTBEAT, T_TELEMETRY, T_TIME_SYNC
from fieldlink.gateway.ringbuf import CommandQueue, RingBuffer
from fieldlink.gateway.uplink import Uplink

GW = b"\x02\x00\x00\x00\x00\x01"
N1 = b"\x02\x00\x00\x00\x00\x11"
N2 = b"\x02\x00\x00\x00\x00\x12"


def test_ring_buffer_drops_oldest_and_counts():
    r = RingBuffer(4)
    for i in range(10):
        r.push(i)
    assert r.items() == [6, 7, 8, 9]
    assert r.dropped == 6 and len(r) == 4 and r.full()
    assert r.popleft() == 6 and r.peek(0) == 7 and r.peek(2) == 9
    raises(IndexError, r.peek, 3)
    r.clear()
    raises(IndexError, r.popleft)


def test_ring_buffer_byte_budget():
    r = RingBuffer(100, max_bytes=10)
    r.push("a", 4)
    r.push("b", 4)
    r.push("c", 4)  # 12 > 10: "a" goes
    assert r.items() == ["b", "c"] and r.nbytes == 8 and r.dropped == 1
    assert r.push("huge", 11) == 1 and r.items() == ["b", "c"]


def test_command_queue_bounds_order_and_expiry():
    q = CommandQueue(per_dest=2, total=3, ttl_ms=1000)
    assert q.put("a", 1, 0) == []
    assert q.put("a", 2, 10) == []
    assert q.put("a", 3, 20) == [1]  # per-destination bound: oldest evicted
    assert q.put("b", 4, 30) == []
    assert q.put("c", 5, 40) == [2]  # total bound: globally oldest evicted
    assert q.overflow == 2 and len(q) == 3
    assert q.first("a") == 3 and q.remove_first("a") == 3 and q.first("a") is None
    q.put("b", 6, 500, ttl_ms=5000)
    assert q.expire(1035) == [4]  # b:4 expired at 1030, c:5 at 1040 not yet
    assert q.take("b", 1035) == [6]
    assert q.expire(2000) == [5] and len(q) == 0 and q.expired == 2


def make_uplink(cap=8, window=4):
    clk = Clock()
    ser = FakeSerial()
    up = Uplink(ser, boot=7, capacity=cap, window=window, ack_timeout_ms=500, host_timeout_ms=2000, clock=clk)
    return clk, ser, up


def test_uplink_buffers_while_host_away_and_flushes_in_order():
    clk, ser, up = make_uplink(cap=8, window=4)
    for i in range(12):  # host never heard: nothing is written, the ring keeps the newest 8
        up.send({"t": "tel", "i": i})
    up.step()
    assert ser.received == [] and up.stats()["ring_dropped"] == 4 and up.pending() == 8
    ser.host_send({"t": "hello"})
    got = []
    for _ in range(10):
        up.step()
        got += ser.take()
        if got:
            ser.host_send({"t": "ack", "s": got[-1]["s"]})
        clk.advance(10)
    assert [m["i"] for m in got] == list(range(4, 12))
    assert [m["s"] for m in got] == list(range(5, 13))
    assert all(m["g"] == 7 for m in got)
    up.step()
    assert up.pending() == 0 and up.acked == 12


def test_uplink_window_and_go_back_n_retransmit():
    clk, ser, up = make_uplink(cap=16, window=3)
    ser.host_send({"t": "hello"})
    for i in range(5):
        up.send({"t": "x", "i": i})
    up.step()
    assert [m["s"] for m in ser.take()] == [1, 2, 3]  # window of 3
    up.step()
    assert ser.take() == []
    ser.host_send({"t": "ack", "s": 1})
    up.step()
    assert [m["s"] for m in ser.take()] == [4]
    clk.advance(600)  # no ack progress: rewind to the oldest unacknowledged
    ser.host_send({"t": "hb"})
    up.step()
    assert [m["s"] for m in ser.take()] == [2, 3, 4]
    assert up.counters["retransmits"] >= 3
    ser.host_send({"t": "ack", "s": 99})  # ack beyond what was sent is ignored
    up.step()
    assert up.acked == 1


def test_uplink_host_timeout_and_hangup_stop_writes():
    clk, ser, up = make_uplink()
    ser.host_send({"t": "hello"})
    up.step()
    assert up.present
    clk.advance(2500)
    up.step()
    assert not up.present and up.counters["host_down"] == 1
    up.send({"t": "x"})
    up.step()
    assert ser.take() == []
    ser.host_send({"t": "hb"})
    up.step()
    assert up.present and [m["t"] for m in ser.take()] == ["x"]
    ser.connected = False
    up.step()
    assert not up.present


def test_uplink_counts_garbage_bad_msgpack_and_unknown_types():
    clk, ser, up = make_uplink()
    seen = []

    def on_msg(m):
        if m["t"] == "cmd":
            seen.append(m)
            return True
        return False
    up.on_message = on_msg
    seed = 12345
    junk = bytearray()
    for _ in range(3000):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        junk.append((seed >> 16) & 0xFF)
    ser.host_raw(bytes(junk) + b"\x00")
    ser.host_raw(encode_frame(b"\xc1\x01"))  # valid frame, invalid msgpack (0xc1 is reserved)
    ser.host_raw(encode_frame(b"\x93\x01"))  # truncated array
    ser.host_raw(encode_frame(mpack.packb([1, 2])))  # not a map
    ser.host_raw(encode_frame(mpack.packb({"t": "bogus"})))
    ser.host_raw(encode_frame(mpack.packb({"t": "cmd", "id": 1, "op": "ping"})))
    ser.host_raw(b"\x05\x01\x02\x03\x04\x00")  # bad CRC
    ser.host_raw(b"\x01" * 5000 + b"\x00")  # oversize frame
    for _ in range(200):
        up.step()
    st = up.stats()
    assert st["bad_msgpack"] == 2 and st["bad_msg"] == 1 and st["unknown_type"] == 1
    assert st["crc_errors"] + st["framing_errors"] >= 2
    assert st["oversize"] >= 1
    assert len(seen) == 1 and seen[0]["op"] == "ping"


class GwRig:
    def __init__(self, cfg=None):
        self.clk = Clock()
        self.air = FakeAir()
        self.link = FakeLink(self.air, GW, gateway=True)
        self.ser = FakeSerial()
        self.up = Uplink(self.ser, boot=3, capacity=32, clock=self.clk)
        self.gw = Gateway(cfg or GW_CFG, self.link, self.up, clock=self.clk, boot=3)
        self.link.running = True
        self.nodes = {}
        self.ser.host_send({"t": "hello"})

    def node(self, mac, handler=None):
        lk = FakeLink(self.air, mac)
        lk.running = True
        self.nodes[mac] = lk
        if handler is not None:
            lk.on(3, handler)
        return lk

    async def io(self, n=10):
        for _ in range(n):
            self.up.step()
            await pump(3)
        msgs = self.ser.take()
        self.ser.received = []
        if msgs:
            self.ser.host_send({"t": "ack", "s": max(m.get("s", 0) for m in msgs)})
        return msgs

    async def cmd(self, cid, cmd_op, to=None, **a):
        m = {"t": "cmd", "id": cid, "op": cmd_op, "a": a}
        if to is not None:
            m["to"] = to
        self.ser.host_send(m)
        return await self.io()


def res_of(msgs, cid):
    return [m for m in msgs if m.get("t") == "res" and m.get("id") == cid]


def test_gateway_answers_ping_status_peers_pairing_and_time_sync():
    async def main():
        r = GwRig()
        times = []
        n1 = r.node(N1)
        n1.on(T_TIME_SYNC, lambda mac, t, obj, mid: times.append(obj["ts"]))
        msgs = await r.cmd(1, "ping", n=5)
        assert res_of(msgs, 1)[0]["r"]["pong"] == 5
        msgs = await r.cmd(2, "pair_begin", s=30)
        assert res_of(msgs, 2)[0]["ok"] and r.link.join_s == 30
        await r.cmd(3, "pair_end")
        assert r.link.join_s == 0
        await n1.send(GW, T_TELEMETRY, {"r": [["t", {"temperature": 20.5}, 0]], "fw": "0.1.0", "boot": 4})
        msgs = await r.io()
        tel = [m for m in msgs if m["t"] == "tel"]
        assert tel[0]["from"] == mac_hex(N1) and tel[0]["d"]["r"][0][1]["temperature"] == 20.5
        assert tel[0]["rssi"] == -42
        msgs = await r.cmd(4, "peers")
        peers = res_of(msgs, 4)[0]["r"]
        assert peers[0]["mac"] == "020000000011" and peers[0]["fw"] == "0.1.0" and peers[0]["boot"] == 4
        msgs = await r.cmd(5, "time_sync", ts=1700000000000)
        res = res_of(msgs, 5)[0]
        assert res["ok"] and res["r"]["sent"] and times == [1700000000000]
        msgs = await r.cmd(6, "status")
        st = res_of(msgs, 6)[0]["r"]
        assert st["nodes"] == 1 and st["gw"]["tel_rx"] == 1 and st["ring_cap"] == 32 and st["time"] >= 1700000000000
        assert st["impl"] == {"frame": "python", "rules": "python"}  # no flnative module on this path
        msgs = await r.cmd(7, "warp_drive")
        assert res_of(msgs, 7)[0]["err"] == "unknown_op" and r.gw.counters["unknown_op"] == 1
        r.ser.host_send({"t": "cmd", "id": "x", "op": "ping"})
        r.ser.host_send({"t": "cmd", "id": 8, "op": "time_sync", "a": {"ts": "soon"}})
        msgs = await r.io()
        assert r.gw.counters["bad_cmd"] == 1 and res_of(msgs, 8)[0]["err"] == "bad_args"
    run(main())


def test_gateway_forwards_node_command_and_reports_ack_result():
    async def main():
        r = GwRig()
        r.node(N1, lambda mac, t, obj, mid: {"ok": True, "op": obj["op"], "name": obj["a"]["name"], "mid": mid})
        msgs = await r.cmd(41, "relay", to="02:00:00:00:00:11", name="fan", op="on")
        msgs += await r.io()
        res = res_of(msgs, 41)[0]
        assert res["ok"] and res["from"] == "020000000011" and res["r"] == {"ok": True, "op": "relay", "name": "fan", "mid": 41}

        def boom(mac, t, obj, mid):
            raise ValueError("broken")
        r.node(N2, boom)
        msgs = await r.cmd(42, "relay", to=mac_hex(N2), name="x", op="on")
        msgs += await r.io()
        res = res_of(msgs, 42)[0]
        assert not res["ok"] and res["err"] == "error" and "broken" in res["r"]
        msgs = await r.cmd(43, "relay", to="zz")
        assert res_of(msgs, 43)[0]["err"] == "bad_mac"
        assert r.gw.counters["cmds_ok"] == 1 and r.gw.counters["cmds_failed"] == 1
    run(main())


def test_gateway_queues_commands_for_sleeping_node_until_it_wakes():
    async def main():
        r = GwRig()
        got = []
        n1 = r.node(N1, lambda mac, t, obj, mid: got.append(obj["a"]["k"]) or {"ok": True, "k": obj["a"]["k"]})
        # the node announces it sleeps 60 s between wakes, then goes to sleep
        await n1.send(GW, T_TELEMETRY, {"r": [], "sl": 60000})
        await r.io()
        r.air.asleep.add(N1)
        r.clk.advance(5000)
        for k in range(3):
            msgs = await r.cmd(50 + k, "config_set", to=mac_hex(N1), k=k)
            assert [m["state"] for m in msgs if m["t"] == "cmd_state"] == ["queued"]
        assert got == [] and len(r.gw.cq) == 3
        msgs = await r.cmd(60, "peers")
        assert res_of(msgs, 60)[0]["r"][0]["q"] == 3
        # wake up: the telemetry ACK tells the node 3 commands wait, then they are delivered in order
        r.air.asleep.discard(N1)
        ack = await n1.send(GW, T_TELEMETRY, {"r": [], "sl": 60000})
        assert ack == {"p": 3}
        msgs = await r.io(20)
        assert got == [0, 1, 2]
        assert [m["id"] for m in msgs if m["t"] == "res"] == [50, 51, 52]
        assert len(r.gw.cq) == 0
    run(main())


def test_gateway_command_expiry_and_queue_overflow_are_reported():
    async def main():
        cfg = dict(GW_CFG)
        cfg["options"] = {"cmd_ttl_s": 10, "cmd_queue_per_node": 2, "ring_buffer": 64}
        r = GwRig(cfg)
        n1 = r.node(N1, lambda mac, t, obj, mid: {"ok": True})
        await n1.send(GW, T_TELEMETRY, {"r": [], "sl": 60000})
        r.air.asleep.add(N1)
        r.clk.advance(3000)
        await r.cmd(70, "ping", to=mac_hex(N1))
        await r.cmd(71, "ping", to=mac_hex(N1), ttl=None)
        msgs = await r.cmd(72, "ping", to=mac_hex(N1))
        assert res_of(msgs, 70)[0]["err"] == "queue_full"
        r.clk.advance(11000)
        r.gw.housekeeping()
        msgs = await r.io()
        assert sorted(m["id"] for m in msgs if m.get("err") == "expired") == [71, 72]
        assert r.gw.counters["cmds_expired"] == 2 and r.gw.counters["cmds_overflow"] == 1
    run(main())


def test_gateway_queues_for_unreachable_awake_node_and_retries_on_contact():
    async def main():
        r = GwRig()
        got = []
        n1 = r.node(N1, lambda mac, t, obj, mid: got.append(mid) or {"ok": True})
        n1.running = False  # out of range
        msgs = await r.cmd(80, "ping", to=mac_hex(N1))
        assert [m["state"] for m in msgs if m["t"] == "cmd_state"] == ["queued"]
        n1.running = True
        await n1.send(GW, T_TELEMETRY, {"r": []})
        msgs = await r.io()
        assert got == [80] and res_of(msgs, 80)[0]["ok"]
    run(main())


def test_gateway_buffers_node_traffic_while_host_away_then_flushes_in_order():
    async def main():
        r = GwRig()
        n1 = r.node(N1)
        await r.io()
        r.ser.connected = False
        for i in range(40):  # ring holds 32
            await n1.send(GW, T_TELEMETRY, {"i": i})
        await r.io()
        assert r.ser.received == [] and r.up.stats()["ring_dropped"] > 0
        r.ser.connected = True
        r.ser.host_send({"t": "hello"})
        got = []
        for _ in range(20):
            got += [m for m in await r.io() if m["t"] == "tel"]
        assert [m["d"]["i"] for m in got] == list(range(8, 40))
        assert r.up.pending() == 0
    run(main())


def test_mac_helpers():
    assert mac_bytes("aa:bb:cc:dd:ee:ff") == b"\xaa\xbb\xcc\xdd\xee\xff"
    assert mac_hex(b"\xaa\xbb\xcc\xdd\xee\xff") == "aabbccddeeff"
    raises(ValueError, mac_bytes, "aabb")
    raises(ValueError, mac_bytes, "zzbbccddeeff")
    raises(ValueError, mac_bytes, 5)


def test_gateway_tasks_run_under_supervisor():
    async def main():
        r = GwRig()
        r.gw.start()
        await asyncio.sleep(0.05)
        assert r.gw.sup.running("uplink") and r.gw.sup.running("link") and r.gw.sup.running("house")
        boot = [m for m in r.ser.take() if m["t"] == "boot"]
        assert boot and boot[0]["s"] == 1 and boot[0]["g"] == 3
        r.gw.stop()
        await asyncio.sleep(0.02)
    run(main())


def test_gateway_reports_join_window_and_forwards_board_and_battery():
    async def main():
        r = GwRig()
        n1 = r.node(N1)
        msgs = await r.cmd(1, "pair_begin", s=30)
        assert [m["open"] for m in msgs if m["t"] == "pj"] == [30]
        r.clk.advance(10500)
        msgs = await r.cmd(2, "status")
        assert res_of(msgs, 2)[0]["r"]["pj"] == 20          # seconds left, rounded up
        r.clk.advance(20000)
        r.gw.housekeeping()                                  # the window closed by itself: reported once
        r.gw.housekeeping()
        msgs = await r.io()
        assert [m["open"] for m in msgs if m["t"] == "pj"] == [0]
        msgs = await r.cmd(3, "status")
        assert res_of(msgs, 3)[0]["r"]["pj"] == 0
        msgs = await r.cmd(4, "pair_begin", s=60)
        msgs += await r.cmd(5, "pair_end")
        assert [m["open"] for m in msgs if m["t"] == "pj"] == [60, 0] and r.link.join_s == 0
        # a heartbeat's board and battery go up unchanged and into the peer table
        await n1.send(GW, T_HEARTBEAT, {"up": 5, "boot": 2, "fw": "0.1.0", "role": "node", "bd": "sim-node",
                                        "bat": 87})
        msgs = await r.io()
        nhb = [m for m in msgs if m["t"] == "nhb"]
        assert nhb[0]["d"]["bd"] == "sim-node" and nhb[0]["d"]["bat"] == 87
        msgs = await r.cmd(6, "peers")
        peer = res_of(msgs, 6)[0]["r"][0]
        assert peer["bd"] == "sim-node" and peer["bat"] == 87
        assert peer["app"] is None                           # a node run from source has no app version
        # the installed app version (docs/protocol.md): forwarded, kept in the peer table, updated
        for i, app in enumerate(("1.4", "2.0")):
            await n1.send(GW, T_HEARTBEAT, {"up": 6 + i, "boot": 2, "fw": "0.1.0", "role": "node",
                                            "bd": "sim-node", "app": app})
            msgs = await r.io()
            assert [m["d"]["app"] for m in msgs if m["t"] == "nhb"] == [app]
            msgs = await r.cmd(7 + i, "peers")
            peer = res_of(msgs, 7 + i)[0]["r"][0]
            assert peer["app"] == app and peer["fw"] == "0.1.0" and peer["bd"] == "sim-node"
    run(main())


def test_gateway_opens_the_join_window_at_start_and_says_so():
    async def main():
        cfg = json.loads(json.dumps(GW_CFG))
        cfg["options"]["permit_join_s"] = 15
        r = GwRig(cfg)
        r.gw.start()
        await asyncio.sleep(0.05)
        msgs = r.ser.take()
        r.gw.stop()
        await asyncio.sleep(0.02)
        assert [m["t"] for m in msgs][:2] == ["boot", "pj"] and msgs[1]["open"] == 15
        assert r.link.join_s == 15 and r.gw.pj_left() == 15
    run(main())


def test_peers_answers_in_pages_that_fit_a_frame():
    # 30 nodes with the largest heartbeat fields: one answer with all of them would not fit the host's
    # 4096-byte frame (docs/protocol.md "peers"); pages of PEERS_PAGE in MAC order, `more` = next offset
    async def main():
        r = GwRig()
        macs = [bytes([2, 0, 0, 0, 1, 40 - i]) for i in range(30)]   # heard in reverse MAC order
        for i, mac in enumerate(macs):
            n = r.node(mac)
            await n.send(GW, T_HEARTBEAT, {"up": 5, "boot": i, "fw": "0.1.0" * 6, "role": "node",
                                           "bd": "b" * 31, "bat": 87, "app": "a" * 31})
            await r.io()
        pages, off, cid = [], 0, 100
        while True:
            m = await r.cmd(cid, "peers", o=off) if off else await r.cmd(cid, "peers")
            res = res_of(m, cid)[0]
            assert res["ok"] and len(mpack.packb(res)) < 4096 - 64, len(mpack.packb(res))
            pages.append([p["mac"] for p in res["r"]])
            if "more" not in res:
                break
            off, cid = res["more"], cid + 1
        assert [len(p) for p in pages] == [8, 8, 8, 6]
        assert [m for p in pages for m in p] == sorted(mac_hex(m) for m in macs)
        m = await r.cmd(200, "peers", o=-1)
        assert res_of(m, 200)[0]["err"] == "bad_args"
        m = await r.cmd(201, "peers", o=40)                 # past the end: an empty last page
        assert res_of(m, 201)[0]["r"] == [] and "more" not in res_of(m, 201)[0]
    run(main())
