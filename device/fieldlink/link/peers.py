# Per-peer link state (compact table, any number of nodes) and ESP-NOW peer registration
# (LRU over the radio's 20 slots, at most 6 of them encrypted).
from fieldlink.link.frame import ticks_diff

SEC_NONE = 0      # no key: plain frames
SEC_ESPNOW = 1    # ESP-NOW CCMP encryption with the LMK (pinned encrypted registration)
SEC_AUTH = 2      # plain ESP-NOW frames + 8-byte HMAC tag keyed by the LMK (no confidentiality)

D_NEW = 0
D_DUP = 1
D_OLD = 2         # behind the dedup window: treated as a duplicate

N_RESULTS = 4     # cached ACK results per peer (commands answered again on a retry)


class Peer:
    """Link state for one remote MAC. The dedup window is a circular bitmap (no allocation per frame)."""

    def __init__(self, mac, window=64):
        self.mac = mac
        self.key = None
        self.sec = SEC_NONE
        self.tx_seq = 0
        self.rx_boot = -1
        self.rx_hi = -1
        self.window = window
        self.bits = bytearray(window // 8)
        self.results = []          # [(seq, status, result)], newest last
        self.ctr_rx = 0            # last accepted command counter (persisted)
        self.ctr_tx = 0            # last command counter sent (persisted, reserved ahead)
        self.last_rx = None        # tick of the last valid frame
        self.inflight = 0
        self.cmd_inflight = False

    def lmk(self):
        """The key the radio encrypts frames to this peer with (natively encrypted peers), else None."""
        return self.key if self.sec == SEC_ESPNOW else None

    def next_seq(self):
        self.tx_seq = (self.tx_seq + 1) & 0xFFFF or 1   # 0 is reserved for unsequenced frames
        return self.tx_seq

    def boot(self, boot):
        """Note the sender's boot id; a new boot id resets the dedup window."""
        if boot != self.rx_boot:
            self.rx_boot = boot
            self.rx_hi = -1
            b = self.bits
            for i in range(len(b)):
                b[i] = 0
            self.results = []

    def _bit(self, seq):
        i = seq % self.window
        return (self.bits[i >> 3] >> (i & 7)) & 1

    def check(self, seq):
        """D_NEW, D_DUP or D_OLD for a sequence number (does not record it)."""
        hi = self.rx_hi
        if hi < 0:
            return D_NEW
        d = (seq - hi) & 0xFFFF
        if d == 0:
            return D_DUP
        if d < 0x8000:
            return D_NEW
        if 0x10000 - d >= self.window:
            return D_OLD
        return D_DUP if self._bit(seq) else D_NEW

    def mark(self, seq):
        """Record seq as applied."""
        hi = self.rx_hi
        w = self.window
        b = self.bits
        if hi < 0:
            for i in range(len(b)):
                b[i] = 0
            self.rx_hi = seq
        else:
            d = (seq - hi) & 0xFFFF
            if d and d < 0x8000:
                if d >= w:
                    for i in range(len(b)):
                        b[i] = 0
                else:
                    s = hi
                    for _ in range(d):
                        s = (s + 1) & 0xFFFF
                        i = s % w
                        b[i >> 3] &= ~(1 << (i & 7)) & 0xFF
                self.rx_hi = seq
        i = seq % w
        b[i >> 3] |= 1 << (i & 7)

    def remember(self, seq, status, result):
        r = self.results
        if len(r) >= N_RESULTS:
            r.pop(0)
        r.append((seq, status, result))

    def recall(self, seq):
        for s, st, res in self.results:
            if s == seq:
                return st, res
        return None


class PeerTable:
    """mac -> Peer for up to max_nodes peers. Unpaired entries are evicted first when full."""

    def __init__(self, max_nodes=256, window=64):
        self.max_nodes = max_nodes
        self.window = window
        self.peers = {}

    def get(self, mac):
        return self.peers.get(mac)

    def add(self, mac):
        """Return the Peer for mac, creating it; None if the table is full of paired peers."""
        p = self.peers.get(mac)
        if p is not None:
            return p
        if len(self.peers) >= self.max_nodes:
            victim = None
            for m, q in self.peers.items():
                if q.key is None and q.inflight == 0:
                    if victim is None or (q.last_rx or 0) < (victim.last_rx or 0):
                        victim = q
            if victim is None:
                return None
            del self.peers[victim.mac]
        p = Peer(bytes(mac), self.window)
        self.peers[p.mac] = p
        return p

    def remove(self, mac):
        if mac in self.peers:
            del self.peers[mac]

    def __len__(self):
        return len(self.peers)


class Registrar:
    """Keeps ESP-NOW registrations within the radio limits by LRU eviction.

    reg: mac -> [last use tick, encrypted, pinned]. Pinned entries (the broadcast address, the node's
    gateway, natively encrypted nodes on a gateway) are never evicted."""

    def __init__(self, esp, clock, max_peers=20, max_encrypted=6, counters=None):
        self.esp = esp
        self.clock = clock
        self.max_peers = max_peers
        self.max_encrypted = max_encrypted
        self.reg = {}
        self.counters = counters if counters is not None else {}

    def n_encrypted(self):
        n = 0
        for e in self.reg.values():
            if e[1]:
                n += 1
        return n

    def _evict(self, encrypted_only):
        victim = None
        vt = 0
        now = self.clock()
        for m, e in self.reg.items():
            if e[2] or (encrypted_only and not e[1]):
                continue
            age = ticks_diff(now, e[0])
            if victim is None or age > vt:
                victim, vt = m, age
        if victim is None:
            return False
        self._del(victim)
        self.counters["evictions"] = self.counters.get("evictions", 0) + 1
        return True

    def _del(self, mac):
        del self.reg[mac]
        try:
            self.esp.del_peer(mac)
        except OSError:
            pass

    def ensure(self, mac, lmk=None, pin=False):
        """Make mac sendable (registered with lmk if given). Raises OSError if no slot can be freed."""
        now = self.clock()
        enc = lmk is not None
        e = self.reg.get(mac)
        if e is not None:
            if e[1] == enc:
                e[0] = now
                if pin:
                    e[2] = True
                return
            self._del(mac)
        if enc and self.n_encrypted() >= self.max_encrypted and not self._evict(True):
            raise OSError("no encrypted peer slot")
        if len(self.reg) >= self.max_peers and not self._evict(False):
            raise OSError("no peer slot")
        try:
            self._add(mac, lmk)
        except OSError:
            # the radio disagrees with our book-keeping (registered elsewhere or full): resync once
            try:
                self.esp.del_peer(mac)
            except OSError:
                if not self._evict(False):
                    raise
            self._add(mac, lmk)
        self.reg[bytes(mac)] = [now, enc, pin]

    def _add(self, mac, lmk):
        if lmk is None:
            self.esp.add_peer(mac)
        else:
            self.esp.add_peer(mac, lmk, 0, 0, True)

    def forget(self, mac):
        if mac in self.reg:
            self._del(mac)

    def unpin(self, mac):
        e = self.reg.get(mac)
        if e is not None:
            e[2] = False
