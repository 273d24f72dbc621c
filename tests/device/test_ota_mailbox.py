# Gateway side of OTA over ESP-NOW (fieldlink.ota.mailbox: image store, mailbox, fan-out to several
# nodes, host commands) with the node side (fieldlink.ota.transfer_node) over the simulated lossy
# link-frame channel of test_ota_transfer. Sleeping nodes, the battery threshold, resume over several
# wakes and after a power cut. Runs under CPython and MicroPython.
import hashlib
import json

from devtest import scratch
from test_ota_transfer import Chan, image

from fieldlink.ota import mailbox as mb
from fieldlink.ota import transfer_tx as ttx
from fieldlink.ota.transfer_node import NodeOta

SIG = bytes(range(64))


def manifest_for(payload, version="2.0"):
    m = {"kind": "app", "size": len(payload), "sha256": hashlib.sha256(payload).digest().hex()
         if hasattr(b"", "hex") else "", "version": version}
    return json.dumps(m).encode()


class FakeUpdater:
    """Test double of the device updater (docs/ota.md "Device update API"): checks that the manifest and
    signature arrive before any payload byte, that writes are contiguous, and the payload SHA-256."""

    def __init__(self, sig=SIG):
        self.sig = sig
        self.slot = bytearray()
        self.begins = 0
        self.finished = 0
        self.manifest = None

    def begin(self, manifest, sig):
        self.begins += 1
        if bytes(sig) != self.sig:
            raise ValueError("bad signature")
        self.manifest = json.loads(bytes(manifest))
        upd = self

        class Session:
            @property
            def offset(self):       # the resume point: everything written is kept (a flash slot)
                return len(upd.slot)

            def write(self, off, data):
                assert off <= len(upd.slot), (off, len(upd.slot))
                upd.slot = bytearray(upd.slot[:off]) + bytes(data)
                if len(upd.slot) > upd.manifest["size"]:
                    raise ValueError("oversize")

            def finish(self):
                upd.finished += 1
                d = hashlib.sha256(bytes(upd.slot)).digest()
                if "".join("%02x" % b for b in d) != upd.manifest["sha256"]:
                    raise ValueError("sha256")
                return "ok"
        return Session()


def hexd(b):
    return "".join("%02x" % x for x in b)


class Net:
    """A gateway mailbox and N nodes, one lossy channel per node."""

    def __init__(self, d, payload, n=3, loss=0.0, batts=None, seed=1, sig=SIG):
        self.d = d
        self.payload = payload
        self.store = mb.ImageStore(d + "/gw")
        self.box = mb.Mailbox(self.store, max_sessions=4, budget=8)
        self.macs = [bytes([2, 0, 0, 0, 0, i + 1]) for i in range(n)]
        self.batt = {}
        self.nodes = {}
        self.upd = {}
        self.chans = {}
        for i, mac in enumerate(self.macs):
            self.batt[mac] = (batts or {}).get(i, 100)
            self.chans[mac] = Chan(seed + i, loss)
            self.upd[mac] = FakeUpdater(sig)
            self.boot(mac)
        self.t = 0
        self.frames_to = {}
        self.log = []
        self.events = []

    def boot(self, mac):
        i = self.macs.index(mac)
        self.nodes[mac] = NodeOta(self.d + "/n%d" % i, self.upd[mac], battery=lambda: self.batt[mac])

    def upload(self, manifest, sig=SIG, step=700):
        iid = mb.image_id(manifest)
        ok, r, err = self.box.command("ota_image", {"id": iid, "size": len(self.payload), "m": manifest,
                                                    "sha256": hashlib.sha256(self.payload).digest(), "sig": sig})
        assert ok, err
        off = r["have"]
        while off < len(self.payload):
            ok, r, err = self.box.command("ota_data", {"id": iid, "off": off, "d": self.payload[off:off + step]})
            assert ok, err
            off = r["have"]
        assert r["ok"]
        return iid

    def step(self):
        out, _ = self.box.poll(self.t)
        for mac, m in out:
            self.frames_to[mac] = self.frames_to.get(mac, 0) + 1
            self.log.append(mac)
            self.chans[mac].send("r", m, self.t)
        for mac in self.macs:
            for to, m in self.chans[mac].due(self.t):
                if to == "r":
                    rep = self.nodes[mac].on_msg(m, self.t)
                    if rep is not None:
                        self.chans[mac].send("s", rep, self.t)
                else:
                    self.box.on_msg(mac, m, self.t)
        self.events += self.box.events()
        self.t += 1

    def until(self, cond, limit=300000):
        while not cond():
            assert self.t < limit, self.box.state()
            self.step()

    def states(self):
        return [self.box.entries[m].state for m in self.macs]


def test_image_store_resumable_upload_and_blob():
    with scratch("otastore") as d:
        payload = image(5000)
        man = manifest_for(payload)
        iid = mb.image_id(man)
        st = mb.ImageStore(d + "/gw")
        sha = hashlib.sha256(payload).digest()
        assert st.begin(iid, len(payload), sha, man, SIG) == 0
        assert st.write(iid, 0, payload[:1000]) == 1000
        st = mb.ImageStore(d + "/gw")               # gateway reboot: the upload continues
        assert st.begin(iid, len(payload), sha, man, SIG) == 1000 and not st.complete()
        for bad in ((iid, 500, payload[500:600]), (iid + 1, 1000, b"x"), (iid, 1000, bytes(4001))):
            try:
                st.write(*bad)
                raise AssertionError("accepted %r" % (bad[:2],))
            except ValueError:
                pass
        assert st.write(iid, 1000, payload[1000:]) == 5000 and st.complete()
        blob = mb.blob_prefix(man, SIG) + payload
        assert st.blob_size() == len(blob)
        assert b"".join(st.read(o, 333) for o in range(0, len(blob), 333)) == blob
        assert blob[:4] == b"FLO1" and blob[4] * 256 + blob[5] == len(man)
        # a payload whose hash differs is thrown away
        st2 = mb.ImageStore(d + "/gw2")
        st2.begin(iid, 10, sha, man, SIG)
        try:
            st2.write(iid, 0, bytes(10))
            raise AssertionError("bad sha256 accepted")
        except ValueError as e:
            assert str(e) == "sha256"
        assert not st2.complete() and st2.have() == 0
        for args in ((iid, 0, sha, man, SIG), (iid, 10, sha[:5], man, SIG), (iid + 1, 10, sha, man, SIG),
                     (iid, 10, sha, man, SIG[:10]), (iid, 10 ** 9, sha, man, SIG)):
            try:
                st2.begin(*args)
                raise AssertionError("begin accepted %r" % (args[1],))
            except ValueError:
                pass


def test_three_nodes_at_once_with_loss():
    with scratch("otafan") as d:
        payload = image(9000, 3)
        net = Net(d, payload, n=3, loss=0.2)
        iid = net.upload(manifest_for(payload))
        ok, r, err = net.box.command("ota_push", {"id": iid, "nodes": [hexd(m) for m in net.macs]})
        assert ok and r == {"n": 3}
        for m in net.macs:
            assert net.box.pending(m) == iid
            assert net.box.heard(m, net.t)
        # all three sessions run side by side (frames interleaved), not one after the other
        net.until(lambda: all(s != "updating" for s in net.states()))
        firsts = [net.log.index(m) for m in net.macs]
        lasts = [len(net.log) - 1 - net.log[::-1].index(m) for m in net.macs]
        assert max(firsts) < min(lasts), (firsts, lasts)       # the three sessions overlap in time
        assert net.states() == ["transferred"] * 3
        for m in net.macs:
            assert bytes(net.upd[m].slot) == payload and net.upd[m].finished == 1
            assert net.nodes[m].result == (True, "ok")
            assert net.box.pending(m) is None
        st = net.box.command("ota_state", {})[1]
        assert st["image"] == {"id": iid, "have": 9000, "ok": True}
        assert all(v["state"] == "transferred" and v["done"] == v["total"] for v in st["nodes"].values())
        seen = [e["state"] for e in net.events if e["from"] == hexd(net.macs[0])]
        assert seen[0] == "scheduled" and seen[1] == "updating" and seen[-1] == "transferred"
        assert len([s for s in seen if s == "updating"]) >= 5       # progress reports on the way


def test_sleeping_node_below_battery_threshold_is_not_started():
    with scratch("otabatt") as d:
        payload = image(4000, 5)
        net = Net(d, payload, n=2, batts={0: 30, 1: 90})
        iid = net.upload(manifest_for(payload))
        ok, r, err = net.box.command("ota_push", {"id": iid, "nodes": [hexd(m) for m in net.macs], "batt": 50})
        assert ok
        low, high = net.macs
        # the node wakes (its telemetry reaches the gateway): it is offered the update and refuses
        assert net.box.heard(low, net.t) and net.box.heard(high, net.t)
        net.until(lambda: net.box.entries[high].state == "transferred")
        e = net.box.entries[low]
        assert e.state == "scheduled" and e.err == "battery" and e.sender is None
        assert net.upd[low].begins == 0 and net.upd[low].slot == bytearray()
        data_to_low = net.frames_to[low]
        assert data_to_low <= 2, data_to_low                       # START (+ a repeat), no DATA
        assert net.box.counters["low_battery"] == 1
        assert any(ev["from"] == hexd(low) and ev.get("err") == "battery" for ev in net.events)
        # heard again in the same wake: not asked again
        assert not net.box.heard(low, net.t)
        # the next wake, still low: refused again; then charged: updated
        net.t += 30000
        assert net.box.heard(low, net.t)
        net.until(lambda: net.box.entries[low].sender is None)
        assert net.box.counters["low_battery"] == 2 and net.upd[low].begins == 0
        net.batt[low] = 70
        net.t += 30000
        assert net.box.heard(low, net.t)
        net.until(lambda: net.box.entries[low].state != "updating" and net.box.entries[low].sender is not None)
        assert net.box.entries[low].state == "transferred" and bytes(net.upd[low].slot) == payload


def test_transfer_continues_over_several_wakes_and_a_power_cut():
    with scratch("otawake") as d:
        payload = image(20000, 9)
        net = Net(d, payload, n=1)
        iid = net.upload(manifest_for(payload))
        net.box.command("ota_push", {"id": iid, "nodes": [hexd(net.macs[0])]})
        mac = net.macs[0]
        ch = net.chans[mac]
        e = net.box.entries[mac]
        net.box.heard(mac, net.t)
        wakes = 0
        cuts = 0
        while e.state == "updating":
            # awake until some chunks went through, then asleep (the radio is off)
            n0 = e.sender.counters["data_tx"]
            net.until(lambda: e.sender.counters["data_tx"] >= n0 + 23 or e.state != "updating")
            if e.state != "updating":
                break
            assert net.nodes[mac].stay_awake(net.t)
            before = e.sender.counters["data_resent"]
            sent = e.sender.sent_max
            ch.down = True
            if wakes % 2:
                net.boot(mac)       # this time the battery ran flat: the node reboots from flash
                cuts += 1
            net.until(lambda: e.sender.state == ttx.STALLED)
            assert not net.nodes[mac].stay_awake(net.t) or net.nodes[mac].rx.sid is None
            ch.down = False
            ch.q = []
            wakes += 1
            net.box.heard(mac, net.t)               # it wakes and sends telemetry: resume
            assert net.box.counters["resumed"] == wakes
            net.until(lambda: e.sender.counters["sacks_rx"] > 0 and e.sender.state != ttx.START)
            # after a resume, less than two windows go again
            net.until(lambda: e.sender.base >= sent or e.state != "updating")
            assert e.sender.counters["data_resent"] - before < 32
        assert wakes >= 3 and cuts >= 1
        assert e.state == "transferred" and bytes(net.upd[mac].slot) == payload
        assert net.upd[mac].begins == 1 + cuts      # the manifest is verified again after each reboot


def test_refusals_reach_the_host():
    with scratch("otarefuse") as d:
        payload = image(3000, 1)
        net = Net(d, payload, n=2, sig=bytes(64))   # the nodes trust another key: refused before payload
        iid = net.upload(manifest_for(payload))
        net.box.command("ota_push", {"id": iid, "nodes": [hexd(m) for m in net.macs]})
        for m in net.macs:
            net.box.heard(m, net.t)
        net.until(lambda: all(s != "updating" for s in net.states()))
        assert net.states() == ["failed", "failed"]
        assert all("bad signature" in net.box.entries[m].err for m in net.macs)
        assert all(net.upd[m].slot == bytearray() for m in net.macs)
        # a payload whose bytes differ from what the manifest says fails at the node's finish
        d2 = d + "/b"
        import os
        os.mkdir(d2)
        net = Net(d2, payload, n=1)
        iid = net.upload(manifest_for(image(3000, 2)))
        net.box.command("ota_push", {"id": iid, "nodes": [hexd(net.macs[0])]})
        net.box.heard(net.macs[0], net.t)
        net.until(lambda: net.states() != ["updating"])
        assert net.states() == ["failed"] and net.box.entries[net.macs[0]].err == "sha256"


def test_host_commands_bad_input_and_limits():
    with scratch("otacmd") as d:
        payload = image(2000, 4)
        net = Net(d, payload, n=5)
        box = net.box
        assert box.command("ota_push", {"id": 1, "nodes": ["020000000001"]}) == (False, None, "no_image")
        for a in ({}, {"id": 1, "size": "x"}, {"id": 1, "size": 10, "sha256": 5}):
            ok, r, err = box.command("ota_image", a)
            assert not ok and err, (a, err)
        assert box.command("nope", {})[2] == "unknown_op"
        iid = net.upload(manifest_for(payload))
        assert box.command("ota_push", {"id": iid, "nodes": ["zz"]})[2] == "bad_mac"
        assert box.command("ota_push", {"id": iid, "nodes": []})[2] == "bad_args"
        assert box.command("ota_push", {"id": iid, "nodes": ["020000000001"], "batt": 101})[2] == "bad_args"
        assert box.command("ota_push", {"id": iid + 1, "nodes": ["020000000001"]})[2] == "no_image"
        # at most max_sessions (4) run at once; the fifth starts when it is heard with a free slot
        box.command("ota_push", {"id": iid, "nodes": [hexd(m) for m in net.macs]})
        started = [box.heard(m, net.t) for m in net.macs]
        assert started == [True, True, True, True, False]
        assert box.active() == 4
        net.until(lambda: box.active() == 0)
        assert box.heard(net.macs[4], net.t)
        net.until(lambda: net.states()[4] != "updating")
        assert net.states() == ["transferred"] * 5
        assert box.command("ota_cancel", {"nodes": [hexd(net.macs[0])]}) == (True, {"n": 0}, None)
        box.command("ota_push", {"id": iid, "nodes": [hexd(net.macs[0])]})
        assert box.command("ota_cancel", {}) == (True, {"n": 1}, None)
        assert box.pending(net.macs[0]) is None
