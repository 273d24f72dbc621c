"""SQLite store of the bridge (WAL): what the gateway sent, telemetry history, the MQTT outbox.

One writer (the bridge) behind a lock. ``synchronous=FULL`` by default: a committed transaction survives
a power cut, which is what "committed before acknowledged" promises (docs/bridge.md "Guarantees").
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack

from fieldlink_host.errors import FieldlinkError

SCHEMA = """
CREATE TABLE IF NOT EXISTS uplink(id INTEGER PRIMARY KEY, g INTEGER, s INTEGER, t TEXT, node TEXT,
    rx_ms INTEGER NOT NULL, body BLOB, UNIQUE(g, s));
CREATE TABLE IF NOT EXISTS teldedup(node TEXT, boot INTEGER, q INTEGER, rx_ms INTEGER,
    PRIMARY KEY(node, boot, q)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS evtdedup(node TEXT, boot INTEGER, e INTEGER, rx_ms INTEGER,
    PRIMARY KEY(node, boot, e)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS telemetry(id INTEGER PRIMARY KEY, node TEXT NOT NULL, sensor TEXT NOT NULL,
    quantity TEXT NOT NULL, value REAL, ts_ms INTEGER NOT NULL, anomaly INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS telemetry_q ON telemetry(node, sensor, ts_ms);
CREATE TABLE IF NOT EXISTS outbox(id INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL,
    retain INTEGER NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS devices(mac TEXT PRIMARY KEY, info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL);
"""

SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")


@functools.lru_cache(maxsize=16)
def _dedup_sql(table: str, col: str, n: int) -> str:
    # a join with a VALUES list is one primary key search per key (a row-value IN scans the whole table)
    return (f"SELECT t.node, t.boot, t.{col} FROM (VALUES " + ",".join(["(?,?,?)"] * n)
            + f") AS v JOIN {table} t ON t.node=v.column1 AND t.boot=v.column2 AND t.{col}=v.column3")


def now_ms() -> int:
    return int(time.time() * 1000)


class Store:
    """Thread-safe access to the bridge database (one connection, one lock)."""

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        if synchronous.upper() not in SYNC_MODES:
            raise FieldlinkError(f"bridge db: synchronous must be one of {', '.join(SYNC_MODES)}")
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self.db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise FieldlinkError(f"bridge db {self.path}: {exc}") from exc
        self.lock = threading.RLock()
        # readers (publisher, web) use their own connection: with WAL they never wait for the writer's
        # commit (an fsync with synchronous=FULL)
        try:
            self.rdb = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise FieldlinkError(f"bridge db {self.path}: {exc}") from exc
        self.rlock = threading.Lock()
        row = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()
        # the published cursor too: after a crash the outbox may be trimmed empty and out_seq (saved on a
        # clean close) old, and an id must never be given to a second message
        self._next_out = max(int(row[0]), self.get_meta("out_seq"), self.get_meta("published")) + 1

    def close(self) -> None:
        with self.lock:
            self.set_meta("out_seq", self._next_out - 1)
            self.db.close()
        with self.rlock:
            self.rdb.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction; committed (durably, with synchronous=FULL) when the block ends."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # -------------------------------------------------------------- meta counters
    def get_meta(self, k: str) -> int:
        with self.lock:
            row = self.db.execute("SELECT v FROM meta WHERE k=?", (k,)).fetchone()
        return int(row[0]) if row else 0

    def set_meta(self, k: str, v: int) -> None:
        with self.lock:
            self.db.execute("INSERT INTO meta(k, v) VALUES(?, ?) ON CONFLICT(k) DO UPDATE SET v=excluded.v", (k, v))

    def add_meta(self, k: str, n: int) -> None:
        with self.lock:
            self.db.execute("INSERT INTO meta(k, v) VALUES(?, ?) ON CONFLICT(k) DO UPDATE SET v=v+excluded.v", (k, n))

    # -------------------------------------------------------------- writing (inside tx())
    def insert_uplinks(self, msgs: Sequence[dict[str, Any]], rx_ms: int) -> list[bool]:
        """Store a group of gateway messages; per message False if its (g, s) is stored already (a resend
        after a bridge restart) or repeats one earlier in the group. One query per gateway boot in the
        group and one ``executemany``, whatever the group's size."""
        spans: dict[Any, tuple[int, int]] = {}
        for m in msgs:
            g, s = m.get("g"), m.get("s")
            if isinstance(g, int) and isinstance(s, int):
                lo, hi = spans.get(g, (s, s))
                spans[g] = (min(lo, s), max(hi, s))
        seen: set[tuple[int, int]] = set()
        for g, (lo, hi) in spans.items():
            seen.update((g, r[0]) for r in self.db.execute(
                "SELECT s FROM uplink WHERE g=? AND s BETWEEN ? AND ?", (g, lo, hi)))
        fresh: list[bool] = []
        rows = []
        pack = msgpack.packb  # type: ignore[attr-defined]  # msgpack-stubs lack it
        for m in msgs:
            g, s = m.get("g"), m.get("s")
            if isinstance(g, int) and isinstance(s, int):
                if (g, s) in seen:
                    fresh.append(False)
                    continue
                seen.add((g, s))
            else:
                g = s = None
            node = m.get("from")
            rows.append((g, s, m.get("t"), node if isinstance(node, str) else None, rx_ms,
                         pack(m, use_bin_type=True)))
            fresh.append(True)
        self.db.executemany("INSERT INTO uplink(g, s, t, node, rx_ms, body) VALUES(?,?,?,?,?,?)", rows)
        return fresh

    def insert_uplink(self, msg: dict[str, Any], rx_ms: int) -> bool:
        """False if this (g, s) is stored already (a resend after a bridge restart)."""
        return self.insert_uplinks([msg], rx_ms)[0]

    def insert_dedup(self, table: str, keys: Sequence[tuple[str, int, int]], rx_ms: int) -> set[tuple[str, int, int]]:
        """Node message keys (from, boot, n) of ``table`` (``teldedup``: telemetry q, ``evtdedup``: event
        e) not stored before: they are stored and returned; repeats (also within ``keys``) are not."""
        if table not in ("teldedup", "evtdedup"):
            raise ValueError(table)
        col = "q" if table == "teldedup" else "e"
        want = list(dict.fromkeys(keys))
        old: set[tuple[str, int, int]] = set()
        for i in range(0, len(want), 256):          # 768 variables per query, far below SQLite's limits
            part = want[i:i + 256]
            # a few fixed sizes (the last key repeated to fill) so the statement is prepared once per size
            size = next(n for n in (4, 16, 64, 256) if n >= len(part))
            part += [part[-1]] * (size - len(part))
            old.update((r[0], r[1], r[2]) for r in self.db.execute(_dedup_sql(table, col, size),
                                                                   [x for k in part for x in k]))
        new = [k for k in want if k not in old]
        self.db.executemany(f"INSERT INTO {table}(node, boot, {col}, rx_ms) VALUES(?,?,?,?)",
                            [(*k, rx_ms) for k in new])
        return set(new)

    def insert_teldedup(self, node: str, boot: int, q: int, rx_ms: int) -> bool:
        """False if this node message (from, boot, q) is stored already."""
        return bool(self.insert_dedup("teldedup", [(node, boot, q)], rx_ms))

    def insert_telemetry(self, rows: Sequence[tuple[str, str, str, float | None, int, int]]) -> None:
        self.db.executemany("INSERT INTO telemetry(node, sensor, quantity, value, ts_ms, anomaly) "
                            "VALUES(?,?,?,?,?,?)", rows)

    def next_out_seq(self, n: int = 1) -> int:
        """The id the next outbox row gets (also the message's ``seq`` in its payload); ``n`` reserves that
        many consecutive ids and returns the first."""
        with self.lock:
            first = self._next_out
            self._next_out += n
            return first

    def insert_outbox(self, rows: Sequence[tuple[int, str, bytes, bool, int]]) -> None:
        self.db.executemany("INSERT INTO outbox(id, topic, payload, retain, created_ms) VALUES(?,?,?,?,?)", rows)

    def save_device(self, mac: str, info: dict[str, Any]) -> None:
        self.save_devices({mac: info})

    def save_devices(self, devices: dict[str, dict[str, Any]]) -> None:
        self.db.executemany("INSERT INTO devices(mac, info) VALUES(?, ?) ON CONFLICT(mac) DO UPDATE SET info=excluded.info",
                            [(mac, json.dumps(info, sort_keys=True)) for mac, info in devices.items()])

    def delete_device(self, mac: str) -> None:
        with self.lock:
            self.db.execute("DELETE FROM devices WHERE mac=?", (mac,))

    # -------------------------------------------------------------- reading
    def devices(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            rows = self.db.execute("SELECT mac, info FROM devices").fetchall()
        return {r[0]: json.loads(r[1]) for r in rows}

    def outbox_after(self, after: int, limit: int) -> list[tuple[int, str, bytes, int]]:
        with self.rlock:   # (id, topic, payload, retain): the column types as stored, no conversion
            rows: list[tuple[int, str, bytes, int]] = self.rdb.execute(
                "SELECT id, topic, payload, retain FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit)).fetchall()
        return rows

    def outbox_pending(self, after: int) -> int:
        with self.rlock:
            return int(self.rdb.execute("SELECT COUNT(*) FROM outbox WHERE id > ?", (after,)).fetchone()[0])

    def trim_outbox(self, upto: int) -> None:
        """Published rows are no longer needed (history lives in ``telemetry``)."""
        with self.lock:
            self.db.execute("DELETE FROM outbox WHERE id <= ?", (upto,))

    def save_published(self, upto: int) -> None:
        """Durable MQTT cursor and outbox trim in one transaction (one commit)."""
        with self.tx() as db:
            db.execute("INSERT INTO meta(k, v) VALUES('published', ?) ON CONFLICT(k) DO UPDATE SET v=excluded.v",
                       (upto,))
            db.execute("DELETE FROM outbox WHERE id <= ?", (upto,))

    def resume_state(self, window: int = 4096) -> tuple[int, int, set[int]] | None:
        """(g, contig, above) for :meth:`UplinkClient.resume`: the latest gateway boot, the top of the
        contiguous run of stored sequence numbers (within the last ``window``) and the ones above a hole."""
        with self.lock:
            row = self.db.execute("SELECT g FROM uplink WHERE g IS NOT NULL ORDER BY id DESC LIMIT 1").fetchone()
            if row is None:
                return None
            g = int(row[0])
            ss = sorted(int(r[0]) for r in self.db.execute(
                "SELECT s FROM uplink WHERE g=? ORDER BY s DESC LIMIT ?", (g, window)))
        contig = ss[0]
        rest = set(ss[1:])
        while contig + 1 in rest:
            contig += 1
            rest.discard(contig)
        return g, contig, rest

    def uplink_count(self) -> int:
        with self.lock:
            return int(self.db.execute("SELECT COUNT(*) FROM uplink").fetchone()[0])

    def uplink_messages(self) -> list[dict[str, Any]]:
        """Every stored gateway message, in arrival order (tests, export)."""
        with self.lock:
            rows = self.db.execute("SELECT body FROM uplink ORDER BY id").fetchall()
        return [msgpack.unpackb(r[0], raw=False, strict_map_key=False) for r in rows]  # type: ignore[attr-defined]

    def history(self, node: str, sensor: str | None = None, quantity: str | None = None,
                since_ms: int | None = None, until_ms: int | None = None, limit: int = 10_000
                ) -> list[dict[str, Any]]:
        sql = "SELECT sensor, quantity, value, ts_ms, anomaly FROM telemetry WHERE node=?"
        args: list[Any] = [node]
        if sensor is not None:
            sql += " AND sensor=?"
            args.append(sensor)
        if quantity is not None:
            sql += " AND quantity=?"
            args.append(quantity)
        if since_ms is not None:
            sql += " AND ts_ms>=?"
            args.append(since_ms)
        if until_ms is not None:
            sql += " AND ts_ms<=?"
            args.append(until_ms)
        sql += " ORDER BY ts_ms, id LIMIT ?"
        args.append(limit)
        with self.rlock:
            rows = self.rdb.execute(sql, args).fetchall()
        return [{"sensor": r[0], "quantity": r[1], "value": r[2], "ts": r[3], "anomaly": bool(r[4])} for r in rows]

    def size_bytes(self) -> int:
        with self.lock:
            pages = self.db.execute("PRAGMA page_count").fetchone()[0]
            size = self.db.execute("PRAGMA page_size").fetchone()[0]
        return int(pages) * int(size)

    # -------------------------------------------------------------- retention
    def enforce_retention(self, max_age_ms: int, max_bytes: int, published_upto: int) -> int:
        """Drop rows older than max_age_ms, then the oldest rows while the database is above max_bytes.
        Returns how many *unpublished* outbox messages were dropped (also added to meta ``dropped``)."""
        cutoff = now_ms() - max_age_ms
        dropped = 0
        with self.tx() as db:
            dropped += db.execute("DELETE FROM outbox WHERE created_ms < ? AND id > ?",
                                  (cutoff, published_upto)).rowcount
            db.execute("DELETE FROM outbox WHERE created_ms < ?", (cutoff,))
            db.execute("DELETE FROM telemetry WHERE ts_ms < ?", (cutoff,))
            db.execute("DELETE FROM uplink WHERE rx_ms < ?", (cutoff,))
            db.execute("DELETE FROM teldedup WHERE rx_ms < ?", (cutoff,))
            db.execute("DELETE FROM evtdedup WHERE rx_ms < ?", (cutoff,))
        for _ in range(20):
            if self.size_bytes() - self._free_bytes() <= max_bytes:
                break
            with self.tx() as db:
                for table, col in (("outbox", "id"), ("telemetry", "id"), ("uplink", "id")):
                    n = int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                    if not n:
                        continue
                    k = max(1, n // 10)
                    top = db.execute(f"SELECT {col} FROM {table} ORDER BY {col} LIMIT 1 OFFSET ?",
                                     (k - 1,)).fetchone()[0]
                    if table == "outbox":
                        dropped += db.execute("DELETE FROM outbox WHERE id <= ? AND id > ?",
                                              (top, published_upto)).rowcount
                    db.execute(f"DELETE FROM {table} WHERE {col} <= ?", (top,))
        if dropped:
            self.add_meta("dropped", dropped)
        return dropped

    def _free_bytes(self) -> int:
        with self.lock:
            free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
            size = self.db.execute("PRAGMA page_size").fetchone()[0]
        return int(free) * int(size)
