# In-memory fake ESP-NOW radio + air for the link tests (imported by test_link_*.py), with the real
# MicroPython ESPNow API surface the link uses: add_peer/del_peer/get_peer, send(mac, msg, sync),
# any()/irecv() returning a reused [mac, bytearray] pair, 250-byte payloads, 20 peers, 6 encrypted.
# Channels: frames only reach radios tuned to the sender's channel. Encryption: a frame sent to a peer
# registered with an LMK is only received by a radio that has the sender registered with the same LMK.
# The air is seeded (xorshift32): loss, duplication, reordering (extra delay), corruption (bit flip).
# The tests at the bottom check the fake itself.

MAX_PAYLOAD = 250
BCAST = b"\xff\xff\xff\xff\xff\xff"


class FakeClock:
    def __init__(self, t=0):
        self.t = t

    def __call__(self):
        return self.t

    def advance(self, ms):
        self.t += ms


class Rng:
    def __init__(self, seed):
        self.x = (seed & 0xFFFFFFFF) or 1

    def next(self):
        x = self.x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.x = x
        return x

    def chance(self, p):
        return p > 0 and (self.next() % 1000000) < int(p * 1000000)

    def below(self, n):
        return self.next() % n if n > 0 else 0


class FakeWLAN:
    def __init__(self, radio, channel=1):
        self.radio = radio
        radio.channel = channel

    def config(self, channel=None, **kw):
        if channel is None:
            return self.radio.channel
        self.radio.channel = channel
        return None


class FakeAir:
    def __init__(self, clock, seed=1, loss=0.0, dup=0.0, reorder=0.0, corrupt=0.0, latency_ms=1):
        self.clock = clock
        self.rng = Rng(seed)
        self.loss = loss
        self.dup = dup
        self.reorder = reorder
        self.corrupt = corrupt
        self.latency_ms = latency_ms
        self.link_loss = {}   # (src mac, dst mac) -> loss probability overriding self.loss
        self.radios = {}
        self.q = []
        self.n = 0
        self.sent = 0
        self.dropped = 0

    def radio(self, mac, **kw):
        r = FakeESPNow(self, bytes(mac), **kw)
        self.radios[r.mac] = r
        return r

    def _queue(self, at, dst, src, data, lmk):
        self.n += 1
        self.q.append((at, self.n, dst, src, data, lmk))

    def transmit(self, src, dst_mac, data, lmk):
        """Returns True if at least one receiver will get the frame (unicast MAC-level ACK)."""
        self.sent += 1
        targets = list(self.radios.values()) if dst_mac == BCAST else [self.radios.get(dst_mac)]
        ok = False
        for r in targets:
            if r is None or r is src or r.channel != src.channel:
                continue
            p = self.link_loss.get((src.mac, r.mac), self.loss)
            if self.rng.chance(p):
                self.dropped += 1
                continue
            ok = True
            d = bytearray(data)
            if self.corrupt and self.rng.chance(self.corrupt):
                i = self.rng.below(len(d))
                d[i] ^= 1 << self.rng.below(8)
            at = self.clock() + self.latency_ms
            if self.reorder and self.rng.chance(self.reorder):
                at += 1 + self.rng.below(20)
            self._queue(at, r, src.mac, bytes(d), lmk)
            if self.dup and self.rng.chance(self.dup):
                self._queue(at + self.rng.below(10), r, src.mac, bytes(d), lmk)
        return ok

    def pump(self):
        now = self.clock()
        if not self.q:
            return
        due = [e for e in self.q if e[0] - now <= 0]
        if not due:
            return
        self.q = [e for e in self.q if e[0] - now > 0]
        due.sort()
        for at, n, r, src, data, lmk in due:
            r.arrive(src, data, lmk)


class FakeESPNow:
    def __init__(self, air, mac, max_peers=20, max_encrypted=6):
        self.air = air
        self.mac = mac
        self.channel = 1
        self.max_peers = max_peers
        self.max_encrypted = max_encrypted
        self.peers = {}   # mac -> (lmk, encrypt)
        self.inbox = []
        self.buf = bytearray(MAX_PAYLOAD)
        self.pair = [None, None]
        self.undecryptable = 0
        self.log = []     # (time, dst, frame) of every send, for schedule tests
        self.deaf = False

    def active(self, flag=None):
        return True

    def add_peer(self, mac, lmk=None, channel=0, ifidx=0, encrypt=None):
        mac = bytes(mac)
        if len(mac) != 6:
            raise ValueError("invalid mac")
        if mac in self.peers:
            raise OSError("ESP_ERR_ESPNOW_EXIST")
        enc = (lmk is not None) if encrypt is None else bool(encrypt)
        if len(self.peers) >= self.max_peers:
            raise OSError("ESP_ERR_ESPNOW_FULL")
        if enc and sum(1 for v in self.peers.values() if v[1]) >= self.max_encrypted:
            raise OSError("ESP_ERR_ESPNOW_FULL (encrypted)")
        self.peers[mac] = (bytes(lmk) if lmk is not None else None, enc)

    def del_peer(self, mac):
        mac = bytes(mac)
        if mac not in self.peers:
            raise OSError("ESP_ERR_ESPNOW_NOT_FOUND")
        del self.peers[mac]

    def get_peer(self, mac):
        p = self.peers.get(bytes(mac))
        if p is None:
            raise OSError("ESP_ERR_ESPNOW_NOT_FOUND")
        return (bytes(mac), p[0], 0, 0, p[1])

    def send(self, mac, msg, sync=True):
        mac = bytes(mac)
        if len(msg) > MAX_PAYLOAD:
            raise ValueError("ESP_ERR_ESPNOW_ARG: message too long")
        p = self.peers.get(mac)
        if p is None:
            raise OSError("ESP_ERR_ESPNOW_NOT_FOUND")
        self.log.append((self.air.clock(), mac, bytes(msg)))
        ok = self.air.transmit(self, mac, bytes(msg), p[0] if p[1] else None)
        return ok if (sync and mac != BCAST) else True

    def arrive(self, src, data, lmk):
        if self.deaf:
            return
        if lmk is not None:
            p = self.peers.get(src)
            if p is None or not p[1] or p[0] != lmk:
                self.undecryptable += 1
                return
        self.inbox.append((src, data))

    def any(self):
        self.air.pump()
        return len(self.inbox) > 0

    def irecv(self, timeout_ms=None):
        self.air.pump()
        if not self.inbox:
            self.pair[0] = None
            self.pair[1] = None
            return self.pair
        src, data = self.inbox.pop(0)
        mv = memoryview(self.buf)
        mv[:len(data)] = data
        self.pair[0] = src
        self.pair[1] = mv[:len(data)]   # reused buffer, like the real irecv()
        return self.pair


def mac(i):
    return bytes([0x02, 0, 0, 0, (i >> 8) & 0xFF, i & 0xFF])


def drive(clock, links, until, max_ms=20000, step=1):
    """Advance the fake clock in step ms, servicing every link, until until() is true. Returns ms used."""
    t0 = clock()
    while not until():
        if clock() - t0 > max_ms:
            raise AssertionError("condition not reached within %d ms" % max_ms)
        for lk in links:
            lk.service()
        clock.advance(step)
    return clock() - t0


# ----------------------------------------------------------------------------- tests of the fake

def test_fake_air_is_deterministic_per_seed():
    def run(seed):
        c = FakeClock()
        air = FakeAir(c, seed=seed, loss=0.3)
        a = air.radio(mac(1))
        air.radio(mac(2))
        a.add_peer(mac(2))
        return [a.send(mac(2), b"x") for _ in range(50)]
    r1 = run(7)
    assert r1 == run(7)
    assert r1 != run(8)
    assert 5 < r1.count(False) < 30


def test_fake_radio_limits_and_reused_buffer():
    c = FakeClock()
    air = FakeAir(c)
    a = air.radio(mac(1))
    b = air.radio(mac(2))
    for i in range(20):
        a.add_peer(mac(100 + i), b"k" * 16 if i < 6 else None)
    failed = False
    try:
        a.add_peer(mac(200))
    except OSError:
        failed = True
    assert failed
    a.del_peer(mac(119))
    failed = False
    try:
        a.add_peer(mac(119), b"k" * 16)   # 7th encrypted peer
    except OSError:
        failed = True
    assert failed
    a.add_peer(mac(2))
    a.send(mac(2), b"one")
    a.send(mac(2), b"two")
    c.advance(1)
    m1 = b.irecv(0)[1]
    assert bytes(m1) == b"one"
    b.irecv(0)
    assert bytes(m1) == b"two"    # same buffer reused: the link must copy what it keeps
    failed = False
    try:
        a.send(mac(2), bytes(251))
    except ValueError:
        failed = True
    assert failed


def test_fake_encryption_needs_matching_key():
    c = FakeClock()
    air = FakeAir(c)
    a = air.radio(mac(1))
    b = air.radio(mac(2))
    a.add_peer(mac(2), b"A" * 16)
    a.send(mac(2), b"secret")
    c.advance(1)
    assert not b.any() and b.undecryptable == 1
    b.add_peer(mac(1), b"A" * 16)
    a.send(mac(2), b"secret")
    c.advance(1)
    assert b.any()
