# Receiving end of the OTA chunk transfer (the node's, driven by fieldlink.ota.transfer_node) and a file
# sink; the protocol and the messages are in fieldlink.ota.transfer (docs/protocol.md "OTA chunk transfer").
#
#   r = Receiver(sink, window=16, battery=None)   battery() -> percent; a START asking for more is
#                                   refused with "battery" (the sender retries at the next wake)
#   reply = r.on_msg(msg)           a START / DATA / POLL / ABORT; reply is a message or None
#   sink: begin(sid, cid, size, chunk) -> first chunk to receive (int, resume point) or refusal (str)
#         write(offset, data)       in order, contiguous; finish() -> (ok, info); abort(reason)
from fieldlink.ota.transfer import (
    MAX_CHUNK, MAX_WINDOW, OP_ABORT, OP_DATA, OP_FIN, OP_POLL, OP_REFUSE, OP_SACK, OP_START, valid,
)
from fieldlink.runtime.store import read_json, write_json

class Receiver:
    """Receives one session at a time into a sink. See the module comment."""

    def __init__(self, sink, window=16, chunk_max=MAX_CHUNK, battery=None):
        if not 0 < window <= MAX_WINDOW:
            raise ValueError("window must be 1..%d" % MAX_WINDOW)
        self.sink = sink
        self.battery = battery
        self.window = window
        self.chunk_max = chunk_max
        self.buf = bytearray(window * chunk_max)   # out-of-order chunks, slot idx % window
        self.held = [-1] * window                  # chunk index held in each slot
        self.lens = [0] * window
        self.sid = None
        self.fin = None
        self.credit = window     # the owner may lower it (e.g. 0 while it erases flash)
        self.counters = {"data_rx": 0, "dup": 0, "beyond": 0, "bad": 0, "sacks_tx": 0, "written": 0}
        self._clear()

    def _clear(self):
        self.base = 0
        self.n = 0
        self.size = 0
        self.chunk = 0
        self.w = self.window
        for i in range(self.window):
            self.held[i] = -1

    def _sack(self, pid):
        bits = 0
        for i in range(MAX_WINDOW):
            idx = self.base + 1 + i
            if idx >= self.base + self.w:
                break
            if self.held[idx % self.window] == idx:
                bits |= 1 << i
        self.counters["sacks_tx"] += 1
        cr = self.credit if self.credit < self.w else self.w
        return [OP_SACK, self.sid, self.base, bits, cr, pid]

    def on_msg(self, msg):
        op = valid(msg)
        if not op:
            self.counters["bad"] += 1
            return None
        sid = msg[1]
        if op == OP_START:
            return self._start(sid, msg[2], msg[3], msg[4], msg[5], msg[6])
        if sid != self.sid:
            if op == OP_POLL or (op == OP_DATA and msg[3]):
                return [OP_REFUSE, sid, "session"]
            return None
        if op == OP_ABORT:
            self._drop(msg[2])
            return None
        if self.fin is not None:
            if op == OP_POLL or (op == OP_DATA and msg[3]):
                return [OP_FIN, sid, self.fin[0], self.fin[1]]
            return None
        if op == OP_POLL:
            return self._sack(msg[2])
        if op == OP_DATA:
            return self._data(msg[2], msg[3], msg[4])
        self.counters["bad"] += 1
        return None

    def _drop(self, reason):
        if self.sid is not None and self.fin is None:
            ab = getattr(self.sink, "abort", None)
            if ab is not None:
                ab(reason)
        self.sid = None
        self.fin = None
        self._clear()

    def _start(self, sid, cid, size, chunk, window, batt):
        if sid == self.sid and size == self.size and chunk == self.chunk:
            if self.fin is not None:
                return [OP_FIN, sid, self.fin[0], self.fin[1]]
            return self._sack(0)        # a repeated START (our SACK was lost)
        if (not 0 < chunk <= self.chunk_max or size <= 0 or not 0 < window <= MAX_WINDOW
                or (size + chunk - 1) // chunk > 0xFFFF):
            self.counters["bad"] += 1
            return [OP_REFUSE, sid, "params"]
        if batt and self.battery is not None:
            try:
                level = self.battery()
            except Exception:  # noqa: BLE001 - an unreadable battery is not enough to start
                level = None
            if level is None or level < batt:
                return [OP_REFUSE, sid, "battery"]
        self._drop("replaced")
        try:
            r = self.sink.begin(sid, cid, size, chunk)
        except Exception as e:  # noqa: BLE001 - a sink failure refuses the session, never the link
            r = "begin: %s" % e
        if not isinstance(r, int):
            return [OP_REFUSE, sid, str(r)]
        n = (size + chunk - 1) // chunk
        if r < 0 or r > n:
            r = 0
        self.sid = sid
        self.size = size
        self.chunk = chunk
        self.n = n
        self.base = r
        self.w = window if window < self.window else self.window
        if r >= n:
            return self._finish()
        return self._sack(0)

    def _expect(self, idx):
        if idx == self.n - 1:
            return self.size - idx * self.chunk
        return self.chunk

    def _write(self, idx, data):
        sid = self.sid
        try:
            self.sink.write(idx * self.chunk, data)
        except Exception as e:  # noqa: BLE001 - a failing write ends the session, never the link
            reason = getattr(e, "reason", None) or "write: %s" % e     # OtaError.reason: a token
            self._drop(reason)
            return [OP_REFUSE, sid, reason]
        self.counters["written"] += 1
        return None

    def _data(self, idx, pid, data):
        c = self.counters
        if idx < 0 or idx >= self.n or len(data) != self._expect(idx):
            c["bad"] += 1
            return None
        c["data_rx"] += 1
        if idx < self.base or self.held[idx % self.window] == idx:
            c["dup"] += 1
        elif idx >= self.base + self.w:
            c["beyond"] += 1
        elif idx > self.base:
            k = idx % self.window
            o = k * self.chunk_max
            self.buf[o:o + len(data)] = data
            self.lens[k] = len(data)
            self.held[k] = idx
        else:
            err = self._write(idx, data)
            if err is not None:
                return err
            self.base += 1
            while True:
                k = self.base % self.window
                if self.held[k] != self.base:
                    break
                o = k * self.chunk_max
                err = self._write(self.base, memoryview(self.buf)[o:o + self.lens[k]])
                if err is not None:
                    return err
                self.held[k] = -1
                self.base += 1
            if self.base >= self.n:
                return self._finish()
        if pid:
            return self._sack(pid)
        return None

    def _finish(self):
        try:
            ok, info = self.sink.finish()
        except Exception as e:  # noqa: BLE001
            ok, info = False, "finish: %s" % e
        self.fin = (bool(ok), info)
        return [OP_FIN, self.sid, self.fin[0], info]


class Resume:
    """Where a transfer into a sink stands, kept in the JSON file `path` ({cid, size, chunk, next}) by the
    store's atomic write every `block` chunks and at the end: after a power cut the transfer continues
    from the last record. The sink records only after the data a record covers is on flash."""

    def __init__(self, path, block=16):
        self.path = path
        self.block = block
        self.state = None
        self.next = 0

    def recorded(self, cid, size, chunk):
        """The chunk a transfer of this image (cid, size, chunk) can continue from; 0 for another one."""
        st = read_json(self.path, "ota resume point")
        if isinstance(st, dict) and st.get("cid") == cid and st.get("size") == size and st.get("chunk") == chunk:
            return st.get("next", 0)
        return 0

    def start(self, cid, size, chunk, resume):
        """A transfer of this image begins at chunk `resume`: recorded at once."""
        self.next = resume
        self.state = {"cid": cid, "size": size, "chunk": chunk, "next": resume}
        self.save()

    def written(self):
        """One more chunk is written; True when a record is due (the sink makes the data durable first)."""
        self.next += 1
        return self.next % self.block == 0

    def save(self):
        self.state["next"] = self.next
        write_json(self.path, self.state)


class FileSink:
    """A sink writing the image to one file and the resume point to FILE.json every `block` chunks
    (and at the end): after a power cut the transfer continues from the last recorded block. The
    data is flushed before the record that covers it is written, so a record never runs ahead of
    the file. finish() checks the SHA-256 when one was given (check(path, size) -> (ok, info) may
    replace it, e.g. the OTA updater's verification)."""

    def __init__(self, path, block=16, sha256=None, check=None):
        self.path = path
        self.rec = Resume(path + ".json", block)
        self.sha256 = sha256
        self.check = check
        self.f = None

    def begin(self, sid, cid, size, chunk):
        resume = self.rec.recorded(cid, size, chunk)
        self._close()
        try:
            self.f = open(self.path, "r+b" if resume else "wb")
        except OSError:
            self.f = open(self.path, "wb")
            resume = 0
        self.rec.start(cid, size, chunk, resume)
        return resume

    def write(self, off, data):
        self.f.seek(off)
        self.f.write(data)
        if self.rec.written():
            self.f.flush()
            self.rec.save()

    def finish(self):
        self.f.flush()
        self.rec.save()
        self._close()
        if self.check is not None:
            return self.check(self.path, self.rec.state["size"])
        if self.sha256 is None:
            return True, None
        import hashlib
        h = hashlib.sha256()
        with open(self.path, "rb") as f:
            while True:
                b = f.read(512)
                if not b:
                    break
                h.update(b)
        ok = h.digest() == self.sha256
        return ok, None if ok else "sha256"

    def abort(self, reason):
        self._close()

    def _close(self):
        if self.f is not None:
            try:
                self.f.close()
            except OSError:
                pass
            self.f = None
