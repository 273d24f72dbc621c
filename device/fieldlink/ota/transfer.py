# OTA chunk transfer over the ESP-NOW link (docs/protocol.md "OTA chunk transfer"): the image is cut
# into fixed-size chunks sent in windows; the receiver answers a poll with a selective-ACK bitmap, so
# only chunks that were really lost are sent again (the link's fragmented-message path resends every
# fragment of a message). Flow control: at most min(window, receiver credit) chunks beyond the first
# missing one are in flight. Resume: the receiver's sink says from which chunk it continues (its last
# durably written block), after a node reboot or a link loss.
#
# Both ends are pure state machines with no radio, clock or file access of their own: the caller feeds
# decoded messages (lists, see the OP_* table) and a millisecond tick, and sends what they return.
#
#   s = Sender(sid, cid, size, read, chunk=200, window=16)   read(offset, n) -> bytes of the image
#   msgs = s.poll(now, budget)      messages due now (at most budget DATA frames); s.due(now) -> ms
#   s.on_msg(msg, now)              a SACK / FIN / REFUSE from the receiver
#   s.state: START SEND WAIT FINWAIT DONE FAILED STALLED; s.resume(now) restarts a STALLED session
#
#   r = Receiver(sink, window=16, battery=None)   battery() -> percent; a START asking for more is
#                                   refused with "battery" (the sender retries at the next wake)
#   reply = r.on_msg(msg)           a START / DATA / POLL / ABORT; reply is a message or None
#   sink: begin(sid, cid, size, chunk) -> first chunk to receive (int, resume point) or refusal (str)
#         write(offset, data)       in order, contiguous; finish() -> (ok, info); abort(reason)
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from fieldlink.runtime.clock import ticks_add, ticks_diff

# messages (msgpack arrays carried as the body of an unsequenced T_OTA_CHUNK link frame)
OP_START = const(1)    # S->R [1, sid, cid, size, chunk, window, min_battery]
OP_DATA = const(2)     # S->R [2, sid, idx, pid, data]     pid != 0: answer with a SACK now
OP_POLL = const(3)     # S->R [3, sid, pid]
OP_SACK = const(4)     # R->S [4, sid, base, bits, credit, pid]
OP_FIN = const(5)      # R->S [5, sid, ok, info]
OP_REFUSE = const(6)   # R->S [6, sid, reason]
OP_ABORT = const(7)    # S->R [7, sid, reason]
ARITY = (0, 7, 5, 3, 6, 4, 3, 3)

MAX_WINDOW = const(32)    # the SACK bitmap is 32 bits
MAX_CHUNK = const(223)    # largest chunk that fits one authenticated ESP-NOW frame (250 - 27)

# sender states
START = const(0)
SEND = const(1)
WAIT = const(2)
FINWAIT = const(3)
DONE = const(4)
FAILED = const(5)
STALLED = const(6)
STATE_NAMES = ("start", "send", "wait", "finwait", "done", "failed", "stalled")

# per-chunk slot state in the sender's window
_INFLIGHT = const(1)
_LOST = const(2)
_ACKED = const(3)


def valid(msg):
    """The op of a well-formed message (list, known op, right arity, int sid), else 0."""
    if not isinstance(msg, list) or not msg:
        return 0
    op = msg[0]
    if not isinstance(op, int) or op < 1 or op > 7 or len(msg) != ARITY[op]:
        return 0
    if not isinstance(msg[1], int):
        return 0
    if op == OP_DATA:
        if not isinstance(msg[2], int) or not isinstance(msg[3], int) or not isinstance(msg[4], (bytes, bytearray)):
            return 0
    elif op == OP_START or op == OP_SACK:
        for v in msg[2:]:
            if not isinstance(v, int) or v < 0:
                return 0
    elif op == OP_POLL:
        if not isinstance(msg[2], int):
            return 0
    return op


def _newer(a, b):
    """Poll ids 1..127 (one msgpack byte): True if a was issued at or after b (a covers b)."""
    return ((a - b) & 0x7F) < 64


class Sender:
    """Sends one image to one receiver. See the module comment."""

    def __init__(self, sid, cid, size, read, chunk=200, window=16, rto_ms=250, rto_max_ms=4000,
                 max_tries=6, min_battery=0):
        if not 0 < chunk <= MAX_CHUNK:
            raise ValueError("chunk must be 1..%d" % MAX_CHUNK)
        if not 0 < window <= MAX_WINDOW:
            raise ValueError("window must be 1..%d" % MAX_WINDOW)
        if size <= 0 or (size + chunk - 1) // chunk > 0xFFFF:
            raise ValueError("size must be 1..65535 chunks")
        if not 0 <= sid <= 0xFFFF:
            raise ValueError("sid must be 0..65535")
        self.sid = sid
        self.cid = cid
        self.size = size
        self.read = read
        self.chunk = chunk
        self.window = window
        self.n = (size + chunk - 1) // chunk
        self.rto_ms = rto_ms
        self.rto_max_ms = rto_max_ms
        self.max_tries = max_tries
        self.min_battery = min_battery
        self.slot = bytearray(window)   # _INFLIGHT/_LOST/_ACKED for chunk idx at idx % window
        self.spid = bytearray(window)   # poll id of the burst the chunk was last sent in
        self.pid = 1                    # poll id of the next burst
        self.sent_max = 0               # highest chunk index ever sent + 1 (a chunk below it is a resend)
        self.info = None                # FIN info / failure reason
        self.ok = None
        self.counters = {"data_tx": 0, "data_resent": 0, "polls_tx": 0, "starts_tx": 0, "sacks_rx": 0,
                         "timeouts": 0, "stalls": 0, "resumes": 0, "bytes_tx": 0}
        self._reset(0)

    def _reset(self, now):
        self.state = START
        self.base = 0
        self.hi = 0                     # every chunk below hi was sent since the (re)start
        self.credit = self.window
        self.tries = 0
        self.due_at = now
        for i in range(self.window):
            self.slot[i] = 0

    # ------------------------------------------------------------------ timers
    def _arm(self, now):
        d = self.rto_ms << self.tries if self.tries < 8 else self.rto_max_ms
        if d > self.rto_max_ms:
            d = self.rto_max_ms
        self.due_at = ticks_add(now, d)

    def due(self, now):
        """ms until poll() has something to do (0 = now), or None when finished/stalled."""
        if self.state >= DONE:
            return None
        if self.state == SEND:
            return 0
        d = ticks_diff(self.due_at, now)
        return d if d > 0 else 0

    def progress(self):
        """Chunks the receiver confirmed, as (done, total)."""
        return self.base, self.n

    def finished(self):
        return self.state == DONE or self.state == FAILED

    def resume(self, now):
        """Restart a stalled (or any unfinished) session: START again; the receiver says where it is."""
        if self.state == DONE or self.state == FAILED:
            return
        self.counters["resumes"] += 1
        self._reset(now)

    def _fail(self, reason):
        self.state = FAILED
        self.ok = False
        self.info = reason

    # ------------------------------------------------------------------ output
    def _data(self, idx, pid):
        off = idx * self.chunk
        n = self.size - off
        if n > self.chunk:
            n = self.chunk
        c = self.counters
        c["data_tx"] += 1
        c["bytes_tx"] += n
        if idx < self.sent_max:
            c["data_resent"] += 1
        else:
            self.sent_max = idx + 1
        k = idx % self.window
        self.slot[k] = _INFLIGHT
        self.spid[k] = self.pid
        return [OP_DATA, self.sid, idx, pid, self.read(off, n)]

    def _next_chunk(self):
        """Index of the next chunk to send (lost ones first, then new ones), or -1."""
        for idx in range(self.base, self.hi):
            if self.slot[idx % self.window] == _LOST:
                return idx
        lim = self.base + (self.credit if self.credit < self.window else self.window)
        if self.hi < lim and self.hi < self.n:
            return self.hi
        return -1

    def poll(self, now, budget=32):
        """Messages to send now: a START, a burst of DATA (at most budget, the last one polls for a
        SACK), or a POLL after a timeout."""
        out = []
        st = self.state
        if st == SEND:
            while len(out) < budget:
                idx = self._next_chunk()
                if idx < 0:
                    break
                if idx == self.hi:
                    self.hi += 1
                out.append(self._data(idx, 0))
            if out and self._next_chunk() < 0:
                out[-1][3] = self.pid       # last frame of the burst: ask for a SACK
                self._next_pid()
                self.state = WAIT
                self.tries = 0
                self._arm(now)
            elif not out:
                # nothing sendable (receiver credit 0): ask again after a timeout
                self.state = WAIT
                self._arm(now)
            return out
        if st >= DONE or ticks_diff(now, self.due_at) < 0:
            return out
        if st != START and self.tries > 0:
            self.counters["timeouts"] += 1
        if self.tries >= self.max_tries:
            self.state = STALLED
            self.counters["stalls"] += 1
            return out
        self.tries += 1
        self._arm(now)
        if st == START:
            self.counters["starts_tx"] += 1
            out.append([OP_START, self.sid, self.cid, self.size, self.chunk, self.window, self.min_battery])
        else:
            self.counters["polls_tx"] += 1
            out.append([OP_POLL, self.sid, self.pid])
            # a POLL covers every chunk sent before it, like the P flag of a DATA frame
            for idx in range(self.base, self.hi):
                k = idx % self.window
                if self.slot[k] == _INFLIGHT:
                    self.spid[k] = self.pid
            self._next_pid()
        return out

    def _next_pid(self):
        self.pid = (self.pid % 127) + 1

    # ------------------------------------------------------------------ input
    def on_msg(self, msg, now):
        """Take a receiver message; returns True if it belonged to this session."""
        op = valid(msg)
        if not op or msg[1] != self.sid or (self.state == DONE or self.state == FAILED):
            return False
        if op == OP_SACK:
            self._sack(msg[2], msg[3], msg[4], msg[5], now)
        elif op == OP_FIN:
            self.state = DONE if msg[2] else FAILED
            self.ok = bool(msg[2])
            self.info = msg[3]
            if self.ok:
                self.base = self.n      # the receiver has every chunk
        elif op == OP_REFUSE:
            if msg[2] == "session" and self.state != START:
                self.resume(now)          # the receiver rebooted: START again, it tells where it is
            else:
                self._fail(msg[2])
        else:
            return False
        return True

    def _sack(self, base, bits, credit, pid, now):
        c = self.counters
        c["sacks_rx"] += 1
        if self.state == STALLED:
            self._reset(now)
        w = self.window
        if self.state == START:
            # answer to START (pid 0): the receiver's resume point; a late SACK of before is ignored
            if pid:
                return
            if base > self.n:
                self._fail("bad_sack")
                return
            self.base = base
            self.hi = base
        elif base < self.base or base > self.hi:
            return                          # stale, or acknowledges what was never sent: ignore
        while self.base < base:
            self.slot[self.base % w] = 0
            self.base += 1
        for i in range(-1, MAX_WINDOW):
            idx = base + 1 + i              # i = -1: the first missing chunk itself
            if idx >= self.hi:
                break
            k = idx % w
            if i >= 0 and bits >> i & 1:
                self.slot[k] = _ACKED
            elif pid and self.slot[k] == _INFLIGHT and _newer(pid, self.spid[k]):
                self.slot[k] = _LOST        # sent before the poll this SACK answers, not received
        self.credit = credit if credit < w else w
        self.tries = 0
        if self.base >= self.n:
            self.state = FINWAIT            # all in: wait for the receiver's FIN (verification result)
            self._arm(now)
        else:
            self.state = SEND


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


class FileSink:
    """A sink writing the image to one file and the resume point to FILE.json every `block` chunks
    (and at the end): after a power cut the transfer continues from the last recorded block. The
    data is flushed before the record that covers it is written, so a record never runs ahead of
    the file. finish() checks the SHA-256 when one was given (check(path, size) -> (ok, info) may
    replace it, e.g. the OTA updater's verification)."""

    def __init__(self, path, block=16, sha256=None, check=None):
        self.path = path
        self.block = block
        self.sha256 = sha256
        self.check = check
        self.f = None
        self.state = None
        self.next = 0

    def _load(self):
        try:
            import json
            with open(self.path + ".json") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _save(self):
        import json
        import os
        tmp = self.path + ".json.tmp"
        with open(tmp, "w") as f:
            json.dump(self.state, f)
        os.rename(tmp, self.path + ".json")

    def begin(self, sid, cid, size, chunk):
        st = self._load()
        resume = 0
        if isinstance(st, dict) and st.get("cid") == cid and st.get("size") == size and st.get("chunk") == chunk:
            resume = st.get("next", 0)
        self.state = {"cid": cid, "size": size, "chunk": chunk, "next": resume}
        self._close()
        try:
            self.f = open(self.path, "r+b" if resume else "wb")
        except OSError:
            self.f = open(self.path, "wb")
            resume = self.state["next"] = 0
        self._save()
        self.next = resume
        return resume

    def write(self, off, data):
        self.f.seek(off)
        self.f.write(data)
        self.next += 1
        if self.next % self.block == 0:
            self.f.flush()
            self.state["next"] = self.next
            self._save()

    def finish(self):
        self.f.flush()
        self.state["next"] = self.next
        self._save()
        self._close()
        if self.check is not None:
            return self.check(self.path, self.state["size"])
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
