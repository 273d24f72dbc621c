# Bounded buffers used by the gateway (and usable by nodes):
#
#   RingBuffer    fixed-capacity FIFO; pushing into a full buffer drops the OLDEST entry and counts it.
#                 Optional byte budget (max_bytes) on top of the entry count.
#   CommandQueue  per-destination queues of pending commands for sleeping / unreachable nodes, bounded
#                 per destination and in total, with expiry (ttl). Expired and rejected commands are
#                 returned to the caller so it can report them (the gateway answers the host).
#
# No allocation per operation beyond the stored objects themselves: the ring is a preallocated list.
from fieldlink.runtime.tasks import ticks_add, ticks_diff


class RingBuffer:
    def __init__(self, capacity, max_bytes=0):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._buf = [None] * capacity
        self._size = [0] * capacity
        self._head = 0  # index of the oldest entry
        self._n = 0
        self.nbytes = 0
        self.dropped = 0  # entries dropped because the buffer was full (oldest first)
        self.pushed = 0

    def __len__(self):
        return self._n

    def full(self):
        return self._n >= self.capacity

    def push(self, item, size=0):
        """Append item (size = its byte cost for max_bytes); returns the number of entries dropped."""
        dropped = 0
        if self.max_bytes and size > self.max_bytes:
            # can never fit: count it as dropped rather than flushing everything else
            self.dropped += 1
            return 1
        while self._n >= self.capacity or (self.max_bytes and self._n and self.nbytes + size > self.max_bytes):
            self._drop_oldest()
            dropped += 1
        i = (self._head + self._n) % self.capacity
        self._buf[i] = item
        self._size[i] = size
        self._n += 1
        self.nbytes += size
        self.pushed += 1
        self.dropped += dropped
        return dropped

    def _drop_oldest(self):
        h = self._head
        self.nbytes -= self._size[h]
        self._buf[h] = None
        self._size[h] = 0
        self._head = (h + 1) % self.capacity
        self._n -= 1

    def peek(self, i=0):
        """The i-th oldest entry (0 = oldest); IndexError when out of range."""
        if i < 0 or i >= self._n:
            raise IndexError("ring index out of range")
        return self._buf[(self._head + i) % self.capacity]

    def popleft(self):
        if not self._n:
            raise IndexError("pop from empty ring")
        item = self._buf[self._head]
        self._drop_oldest()
        return item

    def clear(self):
        while self._n:
            self._drop_oldest()

    def items(self):
        return [self._buf[(self._head + i) % self.capacity] for i in range(self._n)]


class CommandQueue:
    """Pending commands per destination (e.g. a MAC), bounded, in order, with expiry.

    put() returns the list of commands pushed out to make room (oldest of that destination first),
    take() returns the live commands of one destination (oldest first) and forgets them, expire()
    returns every command whose deadline has passed. Commands are opaque objects; deadlines are
    ticks_ms values compared with the supplied `now` via ticks_diff.
    """

    def __init__(self, per_dest=8, total=256, ttl_ms=600000):
        self.per_dest = per_dest
        self.total = total
        self.ttl_ms = ttl_ms
        self._q = {}
        self._n = 0
        self.queued = 0
        self.expired = 0
        self.overflow = 0
        self._diff = ticks_diff

    def __len__(self):
        return self._n

    def pending(self, dest):
        q = self._q.get(dest)
        return len(q) if q else 0

    def destinations(self):
        return list(self._q.keys())

    def put(self, dest, cmd, now, ttl_ms=None):
        """Queue cmd for dest; returns a list of commands evicted to make room (counted in overflow)."""
        ttl = self.ttl_ms if ttl_ms is None else ttl_ms
        evicted = []
        q = self._q.get(dest)
        if q is None:
            q = []
            self._q[dest] = q
        if len(q) >= self.per_dest:
            evicted.append(q.pop(0)[1])
            self._n -= 1
        while self._n >= self.total:
            # evict the globally oldest entry (smallest deadline age) from any destination
            oldest_d = None
            oldest_t = None
            for d, dq in self._q.items():
                if dq and (oldest_t is None or self._diff(dq[0][0], oldest_t) < 0):
                    oldest_t = dq[0][0]
                    oldest_d = d
            if oldest_d is None:
                break
            evicted.append(self._q[oldest_d].pop(0)[1])
            self._n -= 1
            if not self._q[oldest_d] and oldest_d != dest:
                del self._q[oldest_d]
        q.append((ticks_add(now, ttl), cmd))
        self._n += 1
        self.queued += 1
        self.overflow += len(evicted)
        return evicted

    def first(self, dest):
        """The oldest command for dest without removing it, or None (call expire() first)."""
        q = self._q.get(dest)
        return q[0][1] if q else None

    def remove_first(self, dest):
        q = self._q.get(dest)
        if not q:
            return None
        cmd = q.pop(0)[1]
        self._n -= 1
        if not q:
            del self._q[dest]
        return cmd

    def take(self, dest, now):
        """Remove and return the live (unexpired) commands for dest, oldest first."""
        q = self._q.pop(dest, None)
        if not q:
            return []
        self._n -= len(q)
        live = []
        for deadline, cmd in q:
            if self._diff(deadline, now) > 0:
                live.append(cmd)
            else:
                self.expired += 1
        return live

    def expire(self, now):
        """Remove and return every command whose deadline has passed."""
        out = []
        for dest in list(self._q.keys()):
            q = self._q[dest]
            keep = []
            for entry in q:
                if self._diff(entry[0], now) > 0:
                    keep.append(entry)
                else:
                    out.append(entry[1])
            if len(keep) != len(q):
                self._n -= len(q) - len(keep)
                if keep:
                    self._q[dest] = keep
                else:
                    del self._q[dest]
        self.expired += len(out)
        return out
