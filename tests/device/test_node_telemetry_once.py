# Telemetry exactly once across give-ups. Regression: when every ACK of a telemetry message was lost,
# the node gave up and later sent the same readings again in a NEW message (new q, new link sequence),
# so the host got them twice. Now an unacknowledged message keeps its identity: the node repeats it
# frame for frame (Link.resend, dropped by the gateway's link dedup) or, when the link cannot, with the
# same body (same boot and q), which the gateway drops. Real Node + NodeLink + GatewayLink + Gateway +
# Uplink over the fake radio (test_link_fakeradio) and a fake serial host end (test_node_support).
# Runs under CPython and MicroPython.
import json

from test_link_fakeradio import FakeAir, FakeClock, mac
from test_node_support import GW_CFG, NODE_CFG, FakeLink, FakeSerial, asyncio
from test_node_support import FakeAir as FakeLinkAir

from fieldlink.link import frame as lf
from fieldlink.codec import mpack
from fieldlink.runtime.state import State
from fieldlink.gateway.role import TEL_SEEN, Gateway
from fieldlink.link.gateway_link import GatewayLink
from fieldlink.link.node_link import NodeLink
from fieldlink.node.role import MAX_PENDING, Node
from fieldlink.link.peers import SEC_AUTH
from fieldlink.node.sensors import SensorManager
from fieldlink.gateway.uplink import Uplink

GW = mac(0xF00)
N1 = mac(0x21)
KEY = b"0123456789abcdef"


def _node_cfg():
    cfg = json.loads(json.dumps(NODE_CFG))
    cfg["relays"] = []
    return cfg


class Rig:
    """One node and one gateway on the fake air; the host end acknowledges what it received."""

    def __init__(self, seed=1, loss=0.0, dup=0.0, max_tries=3):
        self.c = c = FakeClock(1000)
        self.air = FakeAir(c, seed, loss, dup, 0.0, 0.0)
        pmk = b"P" * 16
        self.gwl = GatewayLink(self.air.radio(GW), GW, clock=c, seed=seed, boot_id=1, pmk=pmk,
                               beacon_closed_ms=60000, max_tries=max_tries)
        self.nl = NodeLink(self.air.radio(N1), N1, clock=c, seed=seed + 1, boot_id=7, pmk=pmk,
                           max_tries=max_tries)
        self.nl._adopt(GW, 1, KEY, SEC_AUTH)
        self.gwl.add_node(N1, KEY, SEC_AUTH, False)
        self.ser = FakeSerial()
        self.up = Uplink(self.ser, boot=3, clock=c)
        self.gw = Gateway(GW_CFG, self.gwl, self.up, clock=c)
        cfg = _node_cfg()
        self.node = Node(cfg, self.nl, sensors=SensorManager(cfg, clock=c), state=State(), clock=c)
        self.host = []      # every gateway -> host message, in arrival order
        self._gs = set()
        self.uplink_dups = 0
        self.ser.host_send({"t": "hello"})
        self._hb = c()

    def step(self):
        self.nl.service()
        self.gwl.service()
        self.up.step()
        if self.ser.received:
            # like fieldlink_host.uplink: drop uplink retransmissions by (g, s), acknowledge at once
            for m in self.ser.received:
                if (m["g"], m["s"]) in self._gs:
                    self.uplink_dups += 1
                else:
                    self._gs.add((m["g"], m["s"]))
                    self.host.append(m)
            self.ser.received = []
            self.ser.host_send({"t": "ack", "s": self.host[-1]["s"]})
        if self.c() - self._hb >= 1000:    # and stays present
            self._hb = self.c()
            self.ser.host_send({"t": "hb"})
        self.c.advance(1)

    def run(self, coro, max_ms=120000):
        out = []

        async def wrap():
            try:
                out.append((True, await coro))
            except Exception as e:  # noqa: BLE001 - re-raised below
                out.append((False, e))

        async def main():
            task = asyncio.create_task(wrap())
            t0 = self.c()
            while not out:
                if self.c() - t0 > max_ms:
                    raise AssertionError("not done within %d ms" % max_ms)
                self.step()
                await asyncio.sleep(0)
            await task
        asyncio.run(main())
        for _ in range(20):     # let the uplink write what the gateway just queued
            self.step()
        ok, v = out[0]
        if not ok:
            raise v
        return v

    def tel(self):
        return [m["d"] for m in self.host if m["t"] == "tel"]

    def tel_frames(self):
        """(link sequence, frame bytes) of every telemetry frame the node put on the air."""
        return [(f[4] << 8 | f[5], f) for t, dst, f in self.nl.esp.log if f[1] == lf.T_TELEMETRY]


def test_acks_lost_the_message_is_repeated_frame_for_frame_and_forwarded_once():
    r = Rig(seed=3)
    r.air.link_loss[(GW, N1)] = 1.0        # the gateway gets everything, the node no ACK
    r.run(r.node.tick())                    # syn + syn2: 2 readings
    assert r.run(r.node.send_telemetry()) is False
    assert r.node.counters["tel_fail"] == 1 and len(r.node.pending) == 2
    assert [d["q"] for d in r.tel()] == [1]
    r.c.advance(1000)
    r.run(r.node.tick())                    # a 3rd reading, after the first message was built
    assert len(r.node.pending) == 3 and r.node.telemetry_due(r.c())
    assert r.run(r.node.send_telemetry()) is False
    r.air.link_loss.clear()
    assert r.run(r.node.send_telemetry()) is True     # the same message once more, now ACKed
    assert len(r.node.pending) == 1 and r.node.counters["tel_tx"] == 1
    assert r.run(r.node.send_telemetry()) is True     # the 3rd reading in the next message
    tel = r.tel()
    assert [d["q"] for d in tel] == [1, 2], tel
    assert [[x[0] for x in d["r"]] for d in tel] == [["syn", "syn2"], ["syn"]]
    assert tel[0]["boot"] == tel[1]["boot"] == r.node.state.boot
    # every try of q 1 put the same bytes on the air; q 2 is the next link message
    frames = r.tel_frames()
    seqs = [s for s, f in frames]
    first = [f for s, f in frames if s == seqs[0]]
    assert len(first) >= 7 and len(set(first)) == 1, len(first)      # 3 + 3 tries, then >= 1
    assert sorted(set(seqs)) == [seqs[0], seqs[0] + 1]
    assert r.gwl.counters["duplicate"] >= 6
    assert r.gw.counters["tel_rx"] == 2 and r.gw.counters["tel_dup"] == 0
    assert r.up.stats()["ring_dropped"] == 0


def test_when_the_link_cannot_repeat_it_the_gateway_drops_the_same_boot_and_q():
    r = Rig(seed=4)
    r.air.link_loss[(GW, N1)] = 1.0
    r.run(r.node.tick())
    assert r.run(r.node.send_telemetry()) is False
    r.air.link_loss.clear()
    # more than half a dedup window of newer messages: the old sequence could fall behind the
    # gateway's window (answered "duplicate" unseen), so the node sends the body as a new message
    for _ in range(33):
        assert r.run(r.node.send_heartbeat()) is True
    assert r.run(r.node.send_telemetry()) is True
    assert [d["q"] for d in r.tel()] == [1]
    assert len([m for m in r.host if m["t"] == "nhb"]) == 33
    assert r.gw.counters["tel_rx"] == 2 and r.gw.counters["tel_dup"] == 1
    seqs = sorted(set(s for s, f in r.tel_frames()))
    assert len(seqs) == 2 and seqs[1] - seqs[0] == 34    # two link messages, one q
    assert len(r.node.pending) == 0 and r.node.counters["tel_tx"] == 1


def test_under_loss_and_duplication_every_q_and_every_reading_reaches_the_host_once():
    for seed in (11, 12):
        r = Rig(seed=seed, loss=0.3, dup=0.1)
        for _ in range(40):
            r.c.advance(500)
            r.run(r.node.tick())
            if r.node.telemetry_due(r.c()):
                r.run(r.node.send_telemetry())
        r.air.loss = 0.0
        r.air.dup = 0.0
        while r.node.pending:
            assert r.run(r.node.send_telemetry()) is True
        tel = r.tel()
        q = [d["q"] for d in tel]
        assert q == list(range(1, len(q) + 1)), (seed, q)             # each q once, none skipped
        c = r.node.counters
        assert c["tel_tx"] == len(q) and c["tel_fail"] > 0 and c["tel_dropped"] == 0, c
        assert sum(len(d["r"]) for d in tel) == c["samples"] - c["invalid"], (seed, c)
        assert r.gwl.counters["duplicate"] > 0 and r.nl.counters["give_up"] > 0


def test_readings_stay_bounded_while_a_message_waits_for_its_ack():
    r = Rig(seed=5)
    r.air.link_loss[(GW, N1)] = 1.0
    r.run(r.node.tick())
    assert r.run(r.node.send_telemetry()) is False
    first = r.tel()[0]
    for i in range(80):
        r.c.advance(1000)
        r.run(r.node.tick())
        if i % 20 == 0:
            assert r.run(r.node.send_telemetry()) is False
        assert len(r.node.pending) <= MAX_PENDING
    assert len(r.node.pending) == MAX_PENDING and r.node.counters["tel_dropped"] > 0
    assert r.node.status()["pending"] == MAX_PENDING
    r.air.link_loss.clear()
    assert r.run(r.node.send_telemetry()) is True       # the waiting message, unchanged
    assert len(r.node.pending) == MAX_PENDING - 2
    while r.node.pending:       # the newest readings kept meanwhile, in messages that fit max_msg
        assert r.run(r.node.send_telemetry()) is True
    tel = r.tel()
    assert [d["q"] for d in tel] == list(range(1, len(tel) + 1)) and tel[0] == first
    assert sum(len(d["r"]) for d in tel[1:]) == MAX_PENDING - 2 and len(tel) >= 3
    assert max(len(mpack.packb(d)) for d in tel) <= r.nl.max_msg
    assert r.gw.counters["tel_rx"] == len(tel) and r.nl.counters["oversize"] == 0


def test_refused_before_sending_keeps_its_q_for_the_next_message():
    # nothing went on the air (the fake gateway is down, no Tx): the readings are rebuilt into the next
    # message, which gets the q that was never used
    air = FakeLinkAir()
    gwl = FakeLink(air, GW, gateway=True)
    got = []
    gwl.on(lf.T_TELEMETRY, lambda m, t, obj, mid: got.append(obj))
    link = FakeLink(air, N1)
    link.running = True
    c = FakeClock(1000)
    cfg = _node_cfg()
    node = Node(cfg, link, sensors=SensorManager(cfg, clock=c), state=State(), clock=c)

    async def main():
        await node.tick()
        assert not await node.send_telemetry()
        c.advance(1000)
        await node.tick()
        gwl.running = True
        assert await node.send_telemetry()
    asyncio.run(main())
    assert [d["q"] for d in got] == [1] and len(got[0]["r"]) == 3


def test_gateway_forwards_each_boot_and_q_once_with_bounded_memory():
    air = FakeLinkAir()
    c = FakeClock(1000)
    gwl = FakeLink(air, GW, gateway=True)
    gwl.running = True
    ser = FakeSerial()
    gw = Gateway(GW_CFG, gwl, Uplink(ser, boot=3, clock=c), clock=c)
    n1 = FakeLink(air, N1)
    ser.host_send({"t": "hello"})

    def body(boot, q):
        return {"q": q, "boot": boot, "r": [["t", {"temperature": 20.0 + q}, 0]]}

    async def main():
        for boot, q in ((4, 1), (4, 1), (4, 2), (5, 1), (5, 1), (4, 2)):
            await n1.send(GW, lf.T_TELEMETRY, body(boot, q))
        for q in range(2, 2 + 3 * TEL_SEEN):
            await n1.send(GW, lf.T_TELEMETRY, body(5, q))
        await n1.send(GW, lf.T_TELEMETRY, body(5, 1 + 3 * TEL_SEEN))     # the newest again
        await n1.send(GW, lf.T_TELEMETRY, {"r": []})                      # no q: always forwarded
        await n1.send(GW, lf.T_TELEMETRY, {"r": []})
    asyncio.run(main())
    msgs = []
    while gw.up.pending():      # 16 in flight at most: the host acknowledges as it goes
        gw.up.step()
        msgs += ser.take()
        ser.host_send({"t": "ack", "s": msgs[-1]["s"]})
    got = [(m["d"].get("boot"), m["d"].get("q")) for m in msgs if m["t"] == "tel"]
    # (4, 2) after boot 5 is forwarded again: only the node's current boot is remembered
    want = [(4, 1), (4, 2), (5, 1), (4, 2)] + [(5, q) for q in range(2, 2 + 3 * TEL_SEEN)] + [(None, None)] * 2
    assert got == want, got
    assert gw.counters["tel_dup"] == 3 and gw.counters["tel_rx"] == len(want) + 3
    assert len(gw.nodes[N1]["tq"][1]) == TEL_SEEN



def test_event_whose_acks_were_lost_is_forwarded_once():
    # Same rule for events (e.g. relay changes): the head event is repeated frame for frame after a
    # give-up, so the gateway forwards it once even though the node sent it several times.
    r = Rig(seed=5)
    r.air.link_loss[(GW, N1)] = 1.0        # the gateway gets every frame, the node no ACK
    r.node.emit("door", "warning", {"open": True})
    assert r.run(r.node.send_events()) is False
    assert r.node.counters["evt_fail"] == 1 and len(r.node.events) == 1
    r.node.emit("door", "info", {"open": False})
    assert r.run(r.node.send_events()) is False     # the first event again, still no ACK
    r.air.link_loss.clear()
    assert r.run(r.node.send_events()) is True      # both delivered now
    evs = [m["d"] for m in r.host if m["t"] == "evt"]
    assert [(e["ev"], e["sev"], e["d"]["open"]) for e in evs] == [("door", "warning", True),
                                                                  ("door", "info", False)], evs
    assert r.node.counters["evt_tx"] == 2 and not r.node.events
    assert r.gwl.counters["duplicate"] >= 3      # the repeats reached the gateway and were dropped
