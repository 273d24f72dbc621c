# Fragmentation and reassembly for link messages larger than one ESP-NOW frame.
# Reassembly is bounded: fragment count, per-message size, total buffered bytes, concurrent messages,
# and a timeout after the first fragment. Every rejection returns a distinct code the link counts.
from fieldlink.link.frame import ticks_diff

R_PENDING = 0       # stored, message not complete yet
R_DONE = 1          # message complete: data returned
R_DUP = 2           # fragment already held (ignored)
R_TOO_MANY = 3      # fragment count above the limit
R_OVERSIZE = 4      # message would exceed max_msg
R_MEM = 5           # reassembly memory cap (or slot limit) reached
R_BAD = 6           # fragment count disagrees with earlier fragments of the same message


def split(data, chunk):
    """Split data into memoryview slices of at most chunk bytes (at least one slice)."""
    mv = memoryview(data)
    n = len(data)
    if n == 0:
        return [mv]
    return [mv[i:i + chunk] for i in range(0, n, chunk)]


class _Slot:
    def __init__(self, key, fcnt, reserve, now):
        self.key = key
        self.fcnt = fcnt
        self.parts = [None] * fcnt
        self.have = 0
        self.size = 0
        self.reserved = reserve
        self.t0 = now


class Reassembler:
    """Collects fragments keyed by an opaque hashable key (src mac, boot id, sequence).

    Memory is reserved when a message's first fragment arrives (fcnt * frag_max, at most max_msg), so an
    admitted message can always complete and several half-received messages can never starve each
    other; a message that does not fit is rejected (R_MEM) and the sender's retry tries again later."""

    def __init__(self, max_msg=2048, mem_cap=4096, timeout_ms=2000, max_frags=16, max_slots=8, frag_max=242):
        self.max_msg = max_msg
        self.mem_cap = mem_cap
        self.timeout_ms = timeout_ms
        self.max_frags = max_frags
        self.max_slots = max_slots
        self.frag_max = frag_max
        self.slots = {}
        self.used = 0      # reserved bytes

    def add(self, key, fidx, fcnt, data, now):
        """Add one fragment (data is copied). Return (code, message bytes or None)."""
        if fcnt > self.max_frags:
            return R_TOO_MANY, None
        s = self.slots.get(key)
        if s is None:
            reserve = fcnt * self.frag_max
            if reserve > self.max_msg:
                reserve = self.max_msg
            if len(self.slots) >= self.max_slots or self.used + reserve > self.mem_cap:
                return R_MEM, None
            s = _Slot(key, fcnt, reserve, now)
            self.slots[key] = s
            self.used += reserve
        elif s.fcnt != fcnt:
            self._drop(s)
            return R_BAD, None
        if s.parts[fidx] is not None:
            return R_DUP, None
        n = len(data)
        if s.size + n > s.reserved:
            self._drop(s)
            return R_OVERSIZE, None
        s.parts[fidx] = bytes(data)
        s.have += 1
        s.size += n
        if s.have < s.fcnt:
            return R_PENDING, None
        out = b"".join(s.parts)
        self._drop(s)
        return R_DONE, out

    def _drop(self, s):
        self.used -= s.reserved
        s.reserved = 0
        if s.key in self.slots:
            del self.slots[s.key]

    def expire(self, now):
        """Drop messages whose first fragment is older than the timeout; return how many."""
        n = 0
        for key in list(self.slots):
            s = self.slots[key]
            if ticks_diff(now, s.t0) >= self.timeout_ms:
                self._drop(s)
                n += 1
        return n

    def next_deadline(self, now):
        """ms until the oldest pending message times out, or None."""
        best = None
        for s in self.slots.values():
            left = self.timeout_ms - ticks_diff(now, s.t0)
            if best is None or left < best:
                best = left
        return best
