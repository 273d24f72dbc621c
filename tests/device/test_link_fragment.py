# Fragment split / reassembly: order, duplicates, loss + timeout, and every limit.
from fieldlink.link import fragment as fr


def _parts(data, chunk):
    return [bytes(p) for p in fr.split(data, chunk)]


def test_split_sizes():
    data = bytes(range(250)) * 2       # 500 bytes
    p = _parts(data, 228)
    assert [len(x) for x in p] == [228, 228, 44]
    assert b"".join(p) == data
    assert _parts(b"", 10) == [b""]
    assert [len(x) for x in _parts(bytes(20), 10)] == [10, 10]


def test_in_order_and_out_of_order():
    data = bytes((i * 7) & 0xFF for i in range(700))
    p = _parts(data, 200)
    r = fr.Reassembler()
    for i in (0, 1, 2):
        assert r.add("k", i, 4, p[i], 0) == (fr.R_PENDING, None)
    assert r.add("k", 3, 4, p[3], 0) == (fr.R_DONE, data)
    assert r.used == 0 and not r.slots
    order = (3, 1, 0, 2)
    for n, i in enumerate(order):
        code, out = r.add("k2", i, 4, p[i], 0)
        assert code == (fr.R_DONE if n == 3 else fr.R_PENDING)
    assert out == data


def test_duplicate_fragment_ignored_and_data_copied():
    r = fr.Reassembler()
    buf = bytearray(b"AAAA")
    assert r.add("k", 0, 2, memoryview(buf), 0)[0] == fr.R_PENDING
    buf[:] = b"XXXX"                       # the radio reuses its buffer
    assert r.add("k", 0, 2, b"ZZZZ", 0)[0] == fr.R_DUP
    assert r.add("k", 1, 2, b"BB", 0) == (fr.R_DONE, b"AAAABB")


def test_missing_fragment_times_out():
    r = fr.Reassembler(timeout_ms=100)
    r.add("k", 0, 3, b"a" * 50, 1000)
    r.add("k", 2, 3, b"c" * 50, 1050)
    assert r.used == 3 * 242        # reserved for the whole message at the first fragment
    assert r.next_deadline(1050) == 50
    assert r.expire(1099) == 0
    assert r.expire(1100) == 1
    assert r.used == 0 and not r.slots
    # a late fragment afterwards starts a new (incomplete) message, not a corrupt one
    assert r.add("k", 1, 3, b"b", 1200)[0] == fr.R_PENDING


def test_limits():
    r = fr.Reassembler(max_msg=100, mem_cap=160, max_frags=4, max_slots=2, frag_max=60)
    assert r.add("a", 0, 5, b"x", 0)[0] == fr.R_TOO_MANY
    assert r.add("a", 0, 3, b"x" * 60, 0)[0] == fr.R_PENDING
    assert r.used == 100                                           # min(3 * 60, max_msg)
    assert r.add("a", 1, 3, b"x" * 60, 0)[0] == fr.R_OVERSIZE     # 120 > max_msg 100
    assert r.used == 0 and "a" not in r.slots                      # whole message dropped
    assert r.add("b", 0, 2, b"x" * 60, 0)[0] == fr.R_PENDING       # reserves 100
    assert r.add("c", 0, 2, b"y" * 10, 0)[0] == fr.R_MEM           # 100 + 100 > mem_cap 160
    assert "c" not in r.slots and r.used == 100
    assert r.add("c", 0, 1, b"y" * 10, 0)[0] == fr.R_DONE          # 60 fits
    assert r.add("d", 0, 2, b"y", 0)[0] == fr.R_MEM
    assert r.add("e", 0, 1, b"y" * 61, 0)[0] == fr.R_OVERSIZE      # fragment larger than frag_max
    assert r.add("b", 0, 3, b"q", 0)[0] == fr.R_BAD                # count changed mid-message
    assert "b" not in r.slots and r.used == 0


def test_admitted_message_always_completes_under_pressure():
    # Two half-received messages cannot starve each other: the second is refused up front.
    r = fr.Reassembler(max_msg=1000, mem_cap=800, frag_max=100)
    assert r.add("a", 0, 5, b"a" * 100, 0)[0] == fr.R_PENDING     # reserves 500
    assert r.add("b", 0, 5, b"b" * 100, 0)[0] == fr.R_MEM
    for i in range(1, 5):
        code, out = r.add("a", i, 5, b"a" * 100, 0)
    assert code == fr.R_DONE and out == b"a" * 500
    assert r.add("b", 0, 5, b"b" * 100, 0)[0] == fr.R_PENDING
    r2 = fr.Reassembler(max_slots=1)
    r2.add("a", 0, 2, b"a", 0)
    assert r2.add("b", 0, 2, b"b", 0)[0] == fr.R_MEM                # slot limit
