# Sending end of the OTA chunk transfer (the gateway's, driven by fieldlink.ota.mailbox); the protocol
# and the messages are in fieldlink.ota.transfer (docs/protocol.md "OTA chunk transfer").
#
#   s = Sender(sid, cid, size, read, chunk=200, window=16)   read(offset, n) -> bytes of the image
#   msgs = s.poll(now, budget)      messages due now (at most budget DATA frames); s.due(now) -> ms
#   s.on_msg(msg, now)              a SACK / FIN / REFUSE from the receiver
#   s.state: START SEND WAIT FINWAIT DONE FAILED STALLED; s.resume(now) restarts a STALLED session
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from fieldlink.ota.transfer import (
    MAX_CHUNK, MAX_WINDOW, OP_DATA, OP_FIN, OP_POLL, OP_REFUSE, OP_SACK, OP_START, valid,
)
from fieldlink.runtime.clock import ticks_add, ticks_diff

# sender states
START = const(0)
SEND = const(1)
WAIT = const(2)
FINWAIT = const(3)
DONE = const(4)
FAILED = const(5)
STALLED = const(6)

# per-chunk slot state in the sender's window
_INFLIGHT = const(1)
_LOST = const(2)
_ACKED = const(3)

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
