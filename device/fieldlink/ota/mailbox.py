# Gateway side of OTA over ESP-NOW (docs/protocol.md "OTA over the uplink" and "OTA chunk transfer"):
#   ImageStore  the update the host uploaded (signed manifest, signature, payload) in the gateway's flash,
#               resumable upload, SHA-256 checked before it can be pushed
#   Mailbox     per-node update entries and the fan-out of transfer sessions (fieldlink.ota.transfer_tx
#               Sender) to several nodes at once under one frame budget; a sleeping node's entry waits
#               until the node is heard, a node that refuses for its battery is retried at its next wake
#   command(op, args, now) the host's ota_* commands; events() the "ota" messages for the host
# Pure: the gateway role feeds it (heard(), on_msg(), poll()) and sends what it returns; no radio here.
# What a node receives is one blob (fieldlink.ota.transfer: MAGIC, the manifest, its signature, payload).
import hashlib
import json
import os

from fieldlink.runtime.clock import ticks_diff
from fieldlink.runtime.store import write_json
from fieldlink.ota import transfer_tx as tr
from fieldlink.ota.fsio import hexs as _hex
from fieldlink.ota.state import unhex as _unhex
from fieldlink.ota.transfer import MAGIC, OP_DATA, SIG_LEN, image_id


def blob_prefix(manifest, sig):
    n = len(manifest)
    return MAGIC + bytes((n >> 8, n & 0xFF)) + bytes(manifest) + bytes(sig)


class ImageStore:
    """One update image in DIR (DIR/image.bin + DIR/image.json). The upload is sequential and resumable
    (`have` bytes are on flash); a complete upload whose SHA-256 differs is discarded."""

    def __init__(self, path, max_size=2 * 1024 * 1024):
        self.dir = path
        self.max_size = max_size
        self.meta = None
        self.prefix = b""
        try:
            os.mkdir(path)
        except OSError:
            pass
        try:
            with open(path + "/image.json") as f:
                m = json.load(f)
            self._set(m)
        except (OSError, ValueError, KeyError, TypeError):
            self.meta = None

    def _set(self, m):
        self.meta = m
        self.prefix = blob_prefix(m["m"].encode(), _unhex(m["sig"]))

    def _save(self):
        write_json(self.dir + "/image.json", self.meta)

    def have(self):
        m = self.meta
        if m is None:
            return 0
        try:
            return min(os.stat(self.dir + "/image.bin")[6], m["size"])
        except OSError:
            return 0

    def complete(self):
        return self.meta is not None and self.meta.get("ok") is True

    def ident(self):
        return self.meta["id"] if self.meta is not None else None

    def begin(self, iid, size, sha256, manifest, sig):
        """Start (or continue, same id) an upload; returns the bytes already stored, or raises ValueError."""
        if not isinstance(size, int) or not 0 < size <= self.max_size:
            raise ValueError("size")
        if len(sha256) != 32 or len(sig) != SIG_LEN or not 0 < len(manifest) < 1024:
            raise ValueError("args")
        if image_id(manifest) != iid:
            raise ValueError("id")
        if self.meta is not None and self.meta["id"] == iid:
            return self.have()
        m = {"id": iid, "size": size, "sha256": _hex(sha256), "m": bytes(manifest).decode(), "sig": _hex(sig),
             "ok": False}
        with open(self.dir + "/image.bin", "wb"):
            pass
        self._set(m)
        self._save()
        return 0

    def write(self, iid, off, data):
        """Append at off (must equal have()); returns have(). On the last byte the SHA-256 is checked."""
        if self.meta is None or self.meta["id"] != iid:
            raise ValueError("id")
        have = self.have()
        if off != have or have + len(data) > self.meta["size"]:
            raise ValueError("offset")
        with open(self.dir + "/image.bin", "ab") as f:
            f.write(data)
        have += len(data)
        if have == self.meta["size"]:
            h = hashlib.sha256()
            with open(self.dir + "/image.bin", "rb") as f:
                while True:
                    b = f.read(1024)
                    if not b:
                        break
                    h.update(b)
            if _hex(h.digest()) != self.meta["sha256"]:
                with open(self.dir + "/image.bin", "wb"):
                    pass
                raise ValueError("sha256")
            self.meta["ok"] = True
            self._save()
        return have

    def blob_size(self):
        return len(self.prefix) + self.meta["size"]

    def read(self, off, n):
        """Bytes [off, off+n) of the blob a node receives (prefix, then payload from flash)."""
        p = self.prefix
        out = b""
        if off < len(p):
            out = p[off:off + n]
            n -= len(out)
            off = len(p)
        if n > 0:
            with open(self.dir + "/image.bin", "rb") as f:
                f.seek(off - len(p))
                out += f.read(n)
        return out


class Entry:
    def __init__(self, mac, iid, batt):
        self.mac = mac
        self.iid = iid
        self.batt = batt
        self.state = "scheduled"
        self.err = None
        self.sender = None
        self.reported = -1      # progress (tenths) last reported to the host
        self.refused = None     # tick of the last battery refusal (not retried in the same wake)


class Mailbox:
    """Update entries per node and the running transfer sessions. See the module comment."""

    def __init__(self, store, max_sessions=4, budget=8, chunk=200, window=16, retry_ms=20000):
        self.store = store
        self.retry_ms = retry_ms
        self.max_sessions = max_sessions
        self.budget = budget
        self.chunk = chunk
        self.window = window
        self.entries = {}       # mac bytes -> Entry
        self._events = []
        self._sid = 0
        self._rr = 0
        self._now = 0
        self.counters = {"pushed": 0, "started": 0, "resumed": 0, "low_battery": 0, "done": 0, "failed": 0}

    # ------------------------------------------------------------------ host side
    def push(self, macs, batt=0):
        """Schedule the stored image for these nodes (an earlier entry for a node is replaced)."""
        if not self.store.complete():
            raise ValueError("no complete image")
        iid = self.store.ident()
        for mac in macs:
            e = Entry(mac, iid, batt)
            self.entries[mac] = e
            self.counters["pushed"] += 1
            self._event(e)
        return len(macs)

    def cancel(self, macs=None):
        n = 0
        for mac in list(self.entries):
            if macs is None or mac in macs:
                e = self.entries.pop(mac)
                if e.state in ("scheduled", "updating"):
                    e.state = "cancelled"
                    self._event(e)
                    n += 1
        return n

    def _event(self, e, progress=None):
        m = {"t": "ota", "from": _hex(e.mac), "id": e.iid, "state": e.state}
        if e.sender is not None:
            m["done"], m["total"] = e.sender.progress()
        if e.err is not None:
            m["err"] = e.err
        if e.state == "transferred" and e.sender is not None and e.sender.info is not None:
            m["r"] = e.sender.info      # the node's activation result (e.g. {"reboot": false} for rules)
        self._events.append(m)

    def events(self):
        """The "ota" messages for the host since the last call."""
        ev = self._events
        self._events = []
        return ev

    def state(self):
        out = {}
        for mac, e in self.entries.items():
            d = {"id": e.iid, "state": e.state}
            if e.sender is not None:
                d["done"], d["total"] = e.sender.progress()
                c = e.sender.counters
                d["sent"], d["resent"], d["resumes"] = c["data_tx"], c["data_resent"], c["resumes"]
            if e.err is not None:
                d["err"] = e.err
            out[_hex(mac)] = d
        return out

    # ------------------------------------------------------------------ node side
    def pending(self, mac):
        """Image id a node should stay awake for (in the ACK result of its message), or None."""
        e = self.entries.get(mac)
        if e is None or e.state not in ("scheduled", "updating"):
            return None
        return e.iid

    def active(self):
        return sum(1 for e in self.entries.values() if e.sender is not None and e.state == "updating"
                   and e.sender.state != tr.STALLED)

    def heard(self, mac, now):
        """The node is awake (it just sent something): start or resume its transfer. Returns True if a
        session is running for it afterwards."""
        e = self.entries.get(mac)
        if e is None or e.state not in ("scheduled", "updating"):
            return False
        s = e.sender
        if s is not None and not s.finished():
            if s.state == tr.STALLED:
                s.resume(now)
                self.counters["resumed"] += 1
            return True
        if e.refused is not None and ticks_diff(now, e.refused) < self.retry_ms:
            return False        # refused for its battery during this wake: asked again at the next one
        if self.active() >= self.max_sessions:
            return False        # stays scheduled: started when the node is heard with a free slot
        self._sid = (self._sid % 0xFFFF) + 1
        e.sender = tr.Sender(self._sid, e.iid, self.store.blob_size(), self.store.read, chunk=self.chunk,
                             window=self.window, min_battery=e.batt)
        e.state = "updating"
        e.err = None
        e.reported = -1
        self.counters["started"] += 1
        return True     # reported to the host as "updating" once the node accepted the START

    def on_msg(self, mac, msg, now):
        """A T_OTA_CHUNK body from a node."""
        e = self.entries.get(mac)
        if e is None or e.sender is None:
            return False
        s = e.sender
        if not s.on_msg(msg, now):
            return False
        self._now = now
        self._check(e)
        return True

    def _check(self, e):
        s = e.sender
        if s.state == tr.DONE:
            e.state = "transferred"
            self.counters["done"] += 1
            self._event(e)
        elif s.state == tr.FAILED:
            if s.info == "battery":
                # not started: the entry waits for the next wake (the threshold is checked again)
                e.state = "scheduled"
                e.err = "battery"
                e.sender = None
                e.refused = self._now
                self.counters["low_battery"] += 1
            else:
                e.state = "failed"
                e.err = s.info
                self.counters["failed"] += 1
            self._event(e)
        elif e.state == "updating" and s.counters["sacks_rx"]:
            done, total = s.progress()
            tenth = done * 10 // total if total else 0
            if tenth != e.reported:
                e.reported = tenth
                self._event(e)

    def poll(self, now):
        """(mac, message) pairs to send now, round-robin over the sessions, at most budget DATA frames
        in all; and the ms until the next timer (None = nothing running)."""
        out = []
        self._now = now
        left = self.budget
        es = [e for e in self.entries.values() if e.sender is not None and e.state == "updating"]
        nxt = None
        if es:
            k = len(es)
            self._rr = (self._rr + 1) % k
            for j in range(k):
                e = es[(self._rr + j) % k]
                s = e.sender
                for m in s.poll(now, left if left > 0 else 0):
                    if m[0] == OP_DATA:
                        left -= 1
                    out.append((e.mac, m))
                self._check(e)
                d = s.due(now)
                if d is not None and (nxt is None or d < nxt):
                    nxt = d
        return out, nxt

    # ------------------------------------------------------------------ host commands
    def command(self, op, a, now=0):
        """One ota_* host command (docs/protocol.md). Returns (ok, result, err)."""
        st = self.store
        try:
            if op == "ota_image":
                have = st.begin(a.get("id"), a.get("size"), bytes(a.get("sha256") or b""),
                                bytes(a.get("m") or b""), bytes(a.get("sig") or b""))
                return True, {"have": have, "ok": st.complete()}, None
            if op == "ota_data":
                have = st.write(a.get("id"), a.get("off"), bytes(a.get("d") or b""))
                return True, {"have": have, "ok": st.complete()}, None
            if op == "ota_push":
                if st.ident() != a.get("id") or not st.complete():
                    return False, None, "no_image"
                to = a.get("nodes")
                if not isinstance(to, list) or not to:
                    return False, None, "bad_args"
                macs = [_unhex(m) for m in to if isinstance(m, str) and len(m) == 12]
                if len(macs) != len(to):
                    return False, None, "bad_mac"
                batt = a.get("batt", 0)
                if not isinstance(batt, int) or not 0 <= batt <= 100:
                    return False, None, "bad_args"
                return True, {"n": self.push(macs, batt)}, None
            if op == "ota_cancel":
                to = a.get("nodes")
                macs = [_unhex(m) for m in to] if isinstance(to, list) else None
                return True, {"n": self.cancel(macs)}, None
            if op == "ota_state":
                return True, {"image": {"id": st.ident(), "have": st.have(), "ok": st.complete()},
                              "nodes": self.state()}, None
        except (ValueError, TypeError, AttributeError) as e:
            return False, None, str(e) or "bad_args"
        except OSError as e:
            return False, None, "storage: %s" % e
        return False, None, "unknown_op"
