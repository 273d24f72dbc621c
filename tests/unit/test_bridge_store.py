"""The bridge's SQLite store: retention by age and by size (oldest first, unpublished drops counted),
history queries, and the sequence state a restarted bridge resumes from."""

from __future__ import annotations

from pathlib import Path

from fieldlink_host.bridge.store import Store, now_ms


def test_retention_by_age_counts_only_unpublished_drops(tmp_path: Path) -> None:
    st = Store(tmp_path / "r.db", "NORMAL")
    old = now_ms() - 80 * 3600_000
    with st.tx():
        st.insert_outbox([(st.next_out_seq(), "t", b"x", False, old) for _ in range(10)])
        st.insert_outbox([(st.next_out_seq(), "t", b"y", False, now_ms()) for _ in range(5)])
        st.insert_telemetry([("n1", "sht", "temperature", 1.0, old, 0), ("n1", "sht", "temperature", 2.0, now_ms(), 0)])
    # 4 of the 10 old messages were published already: 6 unpublished ones are lost to retention
    dropped = st.enforce_retention(72 * 3600_000, 1 << 30, published_upto=4)
    assert dropped == 6 and st.get_meta("dropped") == 6
    assert [r[0] for r in st.outbox_after(0, 100)] == list(range(11, 16))
    assert [h["value"] for h in st.history("n1")] == [2.0]
    st.close()


def test_retention_by_size_drops_oldest_first(tmp_path: Path) -> None:
    st = Store(tmp_path / "s.db", "NORMAL")
    blob = b"z" * 2000
    with st.tx():
        st.insert_outbox([(st.next_out_seq(), "t", blob, False, now_ms()) for _ in range(2000)])
    assert st.size_bytes() > 3_000_000
    dropped = st.enforce_retention(72 * 3600_000, 1_000_000, published_upto=0)
    ids = [r[0] for r in st.outbox_after(0, 10_000)]
    assert dropped == 2000 - len(ids) and dropped > 0 and st.get_meta("dropped") == dropped
    assert ids == list(range(2001 - len(ids), 2001))          # the newest survive
    st.close()


def test_history_ranges_and_resume_state(tmp_path: Path) -> None:
    st = Store(tmp_path / "h.db")
    with st.tx():
        st.insert_telemetry([("n1", "sht", "temperature", float(i), 1000 + i, int(i == 3)) for i in range(10)]
                            + [("n1", "sht", "relative_humidity", 50.0, 1005, 0), ("n2", "sht", "temperature", 9.0, 1005, 0)])
        for s in (1, 2, 3, 4, 7, 8):
            st.insert_uplink({"t": "tel", "g": 5, "s": s}, now_ms())
        assert not st.insert_uplink({"t": "tel", "g": 5, "s": 2}, now_ms())     # stored once
    h = st.history("n1", "sht", "temperature", since_ms=1002, until_ms=1004)
    assert [(x["value"], x["anomaly"]) for x in h] == [(2.0, False), (3.0, True), (4.0, False)]
    assert len(st.history("n1")) == 11 and len(st.history("n1", limit=3)) == 3
    assert st.resume_state() == (5, 4, {7, 8})
    st.close()
    again = Store(tmp_path / "h.db")
    assert again.next_out_seq() == 1 and again.resume_state() == (5, 4, {7, 8})
    again.close()


def test_group_inserts_find_repeats_across_and_within_groups(tmp_path: Path) -> None:
    """insert_uplinks / insert_dedup handle a whole group with a few statements: what was stored in an
    earlier group and what repeats inside the group are reported as repeats, everything else is new and
    stored, at every group size (the dedup query is padded to fixed sizes)."""
    st = Store(tmp_path / "g.db", "NORMAL")
    try:
        for n in (1, 3, 4, 5, 17, 64, 65, 255, 256, 257, 600):
            node = f"n{n}"
            with st.tx():
                first = st.insert_dedup("teldedup", [(node, 1, q) for q in range(0, n, 2)], 0)
            assert first == {(node, 1, q) for q in range(0, n, 2)}
            keys = [(node, 1, q) for q in range(n)] + [(node, 1, n - 1), (node, 2, 0)]
            with st.tx():
                new = st.insert_dedup("teldedup", keys, 0)
            assert new == {(node, 1, q) for q in range(1, n, 2)} | {(node, 2, 0)}, n
            with st.tx():
                assert st.insert_dedup("teldedup", keys, 0) == set()
        with st.tx():
            assert st.insert_dedup("evtdedup", [("a", 1, 7), ("a", 1, 7)], 0) == {("a", 1, 7)}
        msgs = [{"t": "tel", "g": 1, "s": s} for s in (1, 2, 3)]
        with st.tx():
            assert st.insert_uplinks(msgs, 0) == [True, True, True]
        again = [{"t": "tel", "g": 1, "s": 3}, {"t": "tel", "g": 1, "s": 4}, {"t": "tel", "g": 1, "s": 4},
                 {"t": "tel", "g": 2, "s": 1}, {"t": "log"}]
        with st.tx():
            assert st.insert_uplinks(again, 0) == [False, True, False, True, True]
        assert st.uplink_count() == 6
    finally:
        st.close()
