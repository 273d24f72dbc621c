# Per-peer dedup window and LRU ESP-NOW registration (200 nodes on a 20-peer radio).
from test_link_fakeradio import FakeAir, FakeClock, mac

from fieldlink.link import peers as pe


def test_dedup_window_basic():
    p = pe.Peer(b"m", window=64)
    assert p.check(10) == pe.D_NEW
    p.mark(10)
    assert p.check(10) == pe.D_DUP
    assert p.check(11) == pe.D_NEW
    assert p.check(9) == pe.D_NEW           # older but inside the window and never seen
    p.mark(9)
    assert p.check(9) == pe.D_DUP
    p.mark(12)                              # gap: 11 still new
    assert p.check(11) == pe.D_NEW
    p.mark(100)                             # jump ahead by 88 > window: everything older is "old"
    assert p.check(12) == pe.D_OLD
    assert p.check(37) == pe.D_NEW          # 100 - 37 = 63 < 64: inside
    assert p.check(36) == pe.D_OLD          # 64 behind


def test_dedup_window_wraps_at_16_bits():
    p = pe.Peer(b"m", window=32)
    for s in (65530, 65531, 65535):
        p.mark(s)
    assert p.check(0) == pe.D_NEW
    p.mark(0)
    p.mark(3)
    assert p.rx_hi == 3
    for s in (65530, 65531, 65535, 0, 3):
        assert p.check(s) == pe.D_DUP
    for s in (65532, 65533, 65534, 1, 2, 4):
        assert p.check(s) == pe.D_NEW


def test_dedup_window_bits_cleared_when_advancing():
    p = pe.Peer(b"m", window=16)
    p.mark(1)
    p.mark(17)       # 1 and 17 share a bit position; 1 is now 16 behind -> old, 17 dup
    assert p.check(17) == pe.D_DUP
    assert p.check(1) == pe.D_OLD
    assert p.check(16) == pe.D_NEW   # position 0 was never set for seq 16


def test_boot_change_resets_window():
    p = pe.Peer(b"m")
    p.boot(3)
    p.mark(5)
    p.remember(5, 0, "r")
    p.boot(3)
    assert p.check(5) == pe.D_DUP and p.recall(5) == (0, "r")
    p.boot(4)
    assert p.check(5) == pe.D_NEW and p.recall(5) is None


def test_result_cache_is_bounded():
    p = pe.Peer(b"m")
    for s in range(10):
        p.remember(s, 0, s * 2)
    assert len(p.results) == pe.N_RESULTS
    assert p.recall(9) == (0, 18) and p.recall(0) is None


def test_lru_registration_200_nodes_on_20_slots():
    c = FakeClock()
    air = FakeAir(c)
    radio = air.radio(mac(0))
    counters = {}
    reg = pe.Registrar(radio, c, max_peers=20, max_encrypted=6, counters=counters)
    reg.ensure(b"\xff" * 6, None, True)          # broadcast pinned
    for i in range(1, 201):
        c.advance(1)
        reg.ensure(mac(i))
        assert len(radio.peers) <= 20
        assert mac(i) in radio.peers
    assert len(radio.peers) == 20 and b"\xff" * 6 in radio.peers
    assert counters["evictions"] == 200 - 19
    # the 19 most recently used survive; touching one protects it from the next eviction
    assert set(radio.peers) == set([b"\xff" * 6] + [mac(i) for i in range(182, 201)])
    c.advance(1)
    reg.ensure(mac(182))
    c.advance(1)
    reg.ensure(mac(201))
    assert mac(182) in radio.peers and mac(183) not in radio.peers


def test_encrypted_slots_limited_and_pinned_kept():
    c = FakeClock()
    air = FakeAir(c)
    radio = air.radio(mac(0))
    reg = pe.Registrar(radio, c, max_peers=20, max_encrypted=6)
    key = b"K" * 16
    for i in range(1, 5):
        c.advance(1)
        reg.ensure(mac(i), key, True)             # 4 pinned encrypted
    for i in range(5, 9):
        c.advance(1)
        reg.ensure(mac(i), key)                   # 2 fit, then LRU among unpinned encrypted
    assert reg.n_encrypted() == 6
    assert all(mac(i) in radio.peers for i in (1, 2, 3, 4, 7, 8))
    assert mac(5) not in radio.peers and mac(6) not in radio.peers
    for i in range(7, 9):
        reg.unpin(mac(i))
    for i in (7, 8):
        reg.forget(mac(i))
    for i in (9, 10):
        reg.ensure(mac(i), key, True)
    failed = False
    try:
        reg.ensure(mac(11), key)                  # all 6 encrypted slots pinned
    except OSError:
        failed = True
    assert failed
    # re-registering the same mac without a key replaces the encrypted entry
    reg.unpin(mac(10))
    reg.ensure(mac(10))
    assert radio.peers[mac(10)] == (None, False) and reg.n_encrypted() == 5


def test_peer_table_evicts_unpaired_first():
    t = pe.PeerTable(max_nodes=3)
    a = t.add(b"a")
    a.key = b"k"
    b = t.add(b"b")
    b.last_rx = 5
    c = t.add(b"c")
    c.last_rx = 9
    d = t.add(b"d")
    assert d is not None and t.get(b"b") is None and t.get(b"a") is a and t.get(b"c") is c
    for m in (b"c", b"d"):
        t.get(m).key = b"k"
    assert t.add(b"e") is None
