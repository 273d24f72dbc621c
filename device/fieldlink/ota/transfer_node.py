# Node side of OTA over ESP-NOW: the transfer receiver (fieldlink.ota.transfer_rx.Receiver) writing into the
# device updater, plus the stay-awake decision of a battery node.
#
#   ota = NodeOta(store_dir, updater, battery=None, window=16, idle_ms=3000)
#   reply = ota.on_msg(msg, now)      a T_OTA_CHUNK body from the gateway -> reply body or None
#   ota.stay_awake(now)               a session is running and the gateway was heard lately
#   ota.result                        (ok, info) of the last finished transfer, or None
#
# The blob (fieldlink.ota.transfer: MAGIC | manifest length | manifest | signature | payload) is parsed
# here: the signed manifest goes to updater.begin(manifest, sig) -> session, which verifies it before
# a single payload byte is accepted (a refusal ends the transfer with that reason); payload bytes go to
# session.write(offset, data) in order, session.finish() verifies and activates (raises on failure).
# Resume after a power cut: the header is kept in DIR/hdr.bin and the image id in DIR/rx.json (written
# by the store); the
# session is opened again with the same manifest and the transfer continues at the chunk holding the
# updater's resume point (session.offset: what is durably on flash, re-hashed by the updater), so
# what the node lost is at most the chunks in flight plus one firmware piece (< 2 windows).
import json
import os

from fieldlink.runtime.clock import ticks_diff
from fieldlink.runtime.store import read_json, write_json
from fieldlink.ota.transfer import MAGIC, SIG_LEN, image_id
from fieldlink.ota.transfer_rx import Receiver


def ota_credit(esp):
    """OTA chunks a node can take at once without its ESP-NOW receive buffer dropping any (one frame
    of the buffer stays free for other traffic)."""
    try:
        n = esp.config("rxbuf") // 263 - 1
    except Exception:
        return 1
    return n if n > 1 else 1


class BlobSink:
    def __init__(self, path, updater, block=16):
        self.dir = path
        self.updater = updater
        self.block = block
        self.state = None
        self.session = None
        self.hdr = bytearray()
        self.need = 6           # header bytes needed before the payload starts (known after 6)
        self.next = 0
        self.chunk = 0
        try:
            os.mkdir(path)
        except OSError:
            pass

    def _load(self):
        return read_json(self.dir + "/rx.json", "ota resume point")

    def _save(self):
        write_json(self.dir + "/rx.json", self.state)

    def begin(self, sid, cid, size, chunk):
        st = self._load()
        resume = 0
        self.session = None
        self.done = None
        self.hdr = bytearray()
        self.need = 6
        self.chunk = chunk
        if isinstance(st, dict) and st.get("cid") == cid and st.get("size") == size:
            try:
                with open(self.dir + "/hdr.bin", "rb") as f:
                    self.hdr = bytearray(f.read())
                self._parse_len()
                if len(self.hdr) == self.need and image_id(bytes(self.hdr[6:self.need - SIG_LEN])) == cid:
                    self._open()    # verifies the manifest again before any further payload byte
                    if self.done is not None:   # activated before the cut, FIN never sent
                        return self._state(cid, size, chunk, (size + chunk - 1) // chunk, st)
                    # the updater's resume point (the bytes durably on flash) is the truth: nothing it
                    # holds is sent again, whatever chunk size this session uses
                    off = getattr(self.session, "offset", None)
                    if isinstance(off, int) and (self.need + off) // chunk * chunk >= self.need:
                        resume = (self.need + off) // chunk
            except (OSError, ValueError):
                resume = 0
            if not resume:  # from chunk 0: the header comes again (an open session skips what it has)
                self.session = None
                self.hdr = bytearray()
                self.need = 6
        return self._state(cid, size, chunk, resume, st)

    def _state(self, cid, size, chunk, resume, old):
        self.state = {"cid": cid, "size": size, "chunk": chunk, "next": resume}
        if old != self.state:
            self._save()
        self.next = resume
        return resume

    def _parse_len(self):
        h = self.hdr
        if len(h) >= 6:
            if bytes(h[:4]) != MAGIC:
                raise ValueError("not an update blob")
            self.need = 6 + ((h[4] << 8) | h[5]) + SIG_LEN

    def _open(self):
        h = bytes(self.hdr[:self.need])
        m = h[6:self.need - SIG_LEN]
        sig = h[self.need - SIG_LEN:]
        try:
            self.session = self.updater.begin(m, sig)
        except Exception as e:  # noqa: BLE001 - OtaError; re-raised unless this update is already in
            if getattr(e, "reason", None) not in ("busy", "replay") or not self._applied(m):
                raise
            d = json.loads(m)
            self.done = {"kind": d["kind"], "version": d["version"], "counter": d["counter"], "reboot": False}

    def _applied(self, m):
        """The update of this (verified: the refusal came after the signature check) manifest was
        activated before a power cut ate its FIN: on trial now, or installed with its counter."""
        d = json.loads(m)
        st = self.updater.status()
        t = st.get("trial")
        if t is not None and t.get("kind") == d["kind"] and t.get("version") == d["version"]:
            return True
        return st["versions"].get(d["kind"]) == d["version"] and st["counters"].get(d["kind"]) == d["counter"]

    def write(self, off, data):
        mv = memoryview(data)
        while off < self.need and len(mv):
            # header bytes (sequential: off == len(self.hdr)); its length is known after 6 bytes
            take = self.need - off
            if take > len(mv):
                take = len(mv)
            self.hdr += bytes(mv[:take])
            mv = mv[take:]
            off += take
            if off == 6:
                self._parse_len()
            elif off == self.need:
                with open(self.dir + "/hdr.bin", "wb") as f:
                    f.write(self.hdr)
                self._open()
        if len(mv) and self.done is None:
            self.session.write(off - self.need, mv)
        self.next += 1

    def finish(self):
        self.state["next"] = self.next
        self._save()
        if self.done is not None:
            return True, self.done
        if self.session is None:
            return False, "truncated"
        try:
            r = self.session.finish()
        except Exception as e:  # noqa: BLE001 - the updater's refusal is the transfer's result
            return False, getattr(e, "reason", None) or str(e) or e.__class__.__name__
        return True, r if isinstance(r, (str, int, dict)) else None

    def abort(self, reason):
        self.session = None


class NodeOta:
    def __init__(self, store_dir, updater, battery=None, window=16, idle_ms=3000, block=16):
        self.sink = BlobSink(store_dir, updater, block)
        self.rx = Receiver(self.sink, window, battery=battery)
        self.idle_ms = idle_ms
        self.last = None
        self.result = None

    def on_msg(self, msg, now):
        self.last = now
        r = self.rx.on_msg(msg)
        if r is not None and r[0] == 5:     # OP_FIN
            self.result = (r[2], r[3])
        return r

    def running(self):
        return self.rx.sid is not None and self.rx.fin is None

    def stay_awake(self, now):
        """True while a transfer runs and the gateway was heard within idle_ms: a battery node then
        postpones its deep sleep (it continues at its next wake otherwise)."""
        return self.running() and self.last is not None and ticks_diff(now, self.last) < self.idle_ms


T_OTA_CHUNK = 0x0B      # fieldlink.link.frame.T_OTA_CHUNK (not imported: this module stays below the link)


class NodeOtaLink:
    """Wires NodeOta into a running node: T_OTA_CHUNK frames from the gateway go to the receiver, replies
    go back unsequenced (link.send_unseq), the updater comes from the node's OTA hook (node.ota, set by
    fieldlink.main) when the first transfer starts. A finished update that needs it reboots the node.
    Battery: options.battery = "sensor.quantity" (percent) names the reading the threshold is checked
    against; without it the node counts as mains powered (no threshold)."""

    def __init__(self, node, store_dir, idle_ms=3000, credit=16):
        self.node = node
        self.credit = credit    # chunks the radio's receive buffer holds (ota_credit)
        self.dir = store_dir
        self.idle_ms = idle_ms
        self.rx = None
        self.err = None
        spec = node.opts.get("battery") if isinstance(getattr(node, "opts", None), dict) else None
        self.batt = spec.split(".", 1) if isinstance(spec, str) and "." in spec else None
        node.link.on(T_OTA_CHUNK, self.on_frame)

    def battery(self):
        name, q = self.batt
        for r in reversed(self.node.pending):
            if r[0] == name and isinstance(r[1], dict) and q in r[1]:
                return r[1][q]
        return None

    def _make(self):
        hook = getattr(self.node, "ota", None)
        if hook is None or not hasattr(hook, "updater"):
            self.err = "no_updater"
            return None
        rules = getattr(self.node, "rules", None)
        kw = {}
        if rules is not None and hasattr(rules, "load"):
            # a signed rules update is verified, stored by the updater (with its signature envelope) and
            # runs at once (no reboot); a node without a rules engine takes no rules updates
            from fieldlink.rules.verify import verify
            kw["verify_rules"] = verify
            kw["on_rules"] = lambda prog: rules.load(prog, persist=False)
        self.rx = NodeOta(self.dir, hook.updater(**kw), battery=self.battery if self.batt else None,
                          idle_ms=self.idle_ms)
        self.rx.rx.credit = self.credit
        return self.rx

    def on_frame(self, mac, mtype, obj, msgid):
        rx = self.rx or self._make()
        if rx is None:
            if isinstance(obj, list) and len(obj) > 1:
                self.node.link.send_unseq(mac, T_OTA_CHUNK, [6, obj[1], self.err])
            return None
        r = rx.on_msg(obj, self.node.clock())
        if r is not None:
            self.node.link.send_unseq(mac, T_OTA_CHUNK, r)
            if r[0] == 5 and r[2] and isinstance(r[3], dict) and r[3].get("reboot"):
                self.node.schedule_reboot(1500)     # activate: the FIN leaves first
        return None

    def stay_awake(self, now):
        return self.rx is not None and self.rx.stay_awake(now)
