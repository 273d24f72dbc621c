"""Two virtual boards (separate micropython processes) exchanging ESP-NOW through the UDP air hub, started
with fieldlink_host.virtual; plus the launcher's reset handling (deep sleep, watchdog)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fieldlink_host.virtual import DEEPSLEEP_RESET, WDT_RESET, AirHub, VirtualBoard, start_air

HERE = Path(__file__).resolve().parent
A = "02:00:00:00:00:0a"
B = "02:00:00:00:00:0b"


@pytest.fixture
def air() -> Iterator[AirHub]:
    hub = start_air(seed=42)
    yield hub
    hub.stop()


def _board(tmp: Path, name: str, mac: str, air: AirHub, role: str, peer: str | None = None,
           channel: int = 1, count: int = 0) -> VirtualBoard:
    env = {"APP_ROLE": role, "APP_CHANNEL": str(channel), "APP_COUNT": str(count)}
    if peer:
        env["APP_PEER"] = peer.replace(":", "")
    return VirtualBoard(tmp / name, mac=mac, air=air, entry="air_two_boards_app:main", env=env,
                        extra_path=[HERE])


def _exchange(tmp: Path, air: AirHub, count: int, rx_channel: int = 1) -> tuple[list[int], list[int], str]:
    rx = _board(tmp, "rx", B, air, "receiver", channel=rx_channel).start()
    tx = _board(tmp, "tx", A, air, "sender", peer=B, count=count)
    try:
        rx.wait_for("^ready$", timeout=20)
        tx.start()
        done = tx.wait_for("^done ", timeout=60)
        time.sleep(0.5)  # let the last frames land
        acked = [int(m.group(1)) for line in tx.lines if (m := re.match(r"sent (\d+) 1$", line))]
        assert len([ln for ln in tx.lines if ln.startswith("sent ")]) == count
        got = []
        for line in rx.lines:
            m = re.match(r"recv ([0-9a-f]{12}) msg-(\d+) (-?\d+)$", line)
            if m:
                assert m.group(1) == A.replace(":", "")
                assert -127 <= int(m.group(3)) <= 0
                got.append(int(m.group(2)))
        return acked, got, done
    finally:
        tx.stop()
        rx.stop()


def test_clean_link_delivers_everything_in_order(tmp_path: Path, air: AirHub) -> None:
    acked, got, done = _exchange(tmp_path, air, 25)
    assert acked == list(range(25))
    assert got == list(range(25))
    assert done == "done (25, 25, 0, 0, 0)"
    assert air.stats()["delivered"] == 25


def test_lossy_link_sync_results_match_arrivals(tmp_path: Path, air: AirHub) -> None:
    air.set_link(A, B, loss=0.3)
    acked, got, _ = _exchange(tmp_path, air, 120)
    assert got == sorted(set(got)), "frames reordered or duplicated"
    assert got == acked, "sync send results must match what arrived"
    assert 60 <= len(got) <= 110, len(got)
    st = air.stats()
    assert st["lost"] == 120 - len(got)


def test_latency_and_duplication(tmp_path: Path, air: AirHub) -> None:
    air.set_link(A, B, latency_ms=30, dup=1.0)
    t0 = time.monotonic()
    acked, got, _ = _exchange(tmp_path, air, 10)
    assert acked == list(range(10))
    assert got == [i for i in range(10) for _ in (0, 1)]  # each frame twice, in order
    assert time.monotonic() - t0 >= 0.3  # 10 sync sends x 30 ms


def test_other_channel_hears_nothing(tmp_path: Path, air: AirHub) -> None:
    acked, got, done = _exchange(tmp_path, air, 5, rx_channel=6)
    assert acked == [] and got == []
    assert done == "done (5, 5, 5, 0, 0)"  # every send gets a (failed) response: tx_responses counts it (modespnow.c send_cb)


def test_hub_counts_bad_datagrams_and_refuses_bad_control(air: AirHub) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (b"", b"T\x00", b"\x00garbage", b"Rshort"):
            s.sendto(junk, (air.host, air.port))
    from fieldlink_host.errors import FieldlinkError

    with pytest.raises(FieldlinkError, match="must be in 0..1"):
        air.set_link(A, B, loss=2.0)
    with pytest.raises(FieldlinkError, match="unknown op"):
        air.control({"op": "explode"})
    assert air.stats()["bad"] >= 5


def test_scenario_air_section_sets_links(tmp_path: Path, air: AirHub) -> None:
    air.apply_scenario({"seed": 5, "air": {"defaults": {"latency_ms": 1},
                                           "links": [{"src": A, "dst": B, "loss": 1.0}]}})
    acked, got, _ = _exchange(tmp_path, air, 4)
    assert acked == got == []


def test_deepsleep_restarts_after_sleep_time(tmp_path: Path, air: AirHub) -> None:
    vb = _board(tmp_path, "sleepy", A, air, "sleeper").start()
    try:
        vb.wait_for("awake for good", timeout=30)
        boots = [ln for ln in vb.lines if ln.startswith("boot ")]
        assert boots == ["boot 0 cause 1", f"boot 1 cause {DEEPSLEEP_RESET}", f"boot 2 cause {DEEPSLEEP_RESET}"]
        assert ("sleep", 300) in vb.events
        assert vb.wait_exit(10) == 0
    finally:
        vb.stop()


def test_missed_watchdog_feed_resets_board(tmp_path: Path, air: AirHub) -> None:
    vb = _board(tmp_path, "wdt", A, air, "watchdog").start()
    try:
        vb.wait_for("recovered from watchdog", timeout=30)
        assert f"cause {WDT_RESET}" in vb.lines
        assert ("reset", WDT_RESET) in vb.events
    finally:
        vb.stop()


def test_micropython_hub_works_too(tmp_path: Path) -> None:
    hub = start_air(seed=1, runtime="micropython")
    try:
        assert hub.control({"op": "ping"})["port"] == hub.port
        acked, got, _ = _exchange(tmp_path, hub, 5)
        assert acked == got == list(range(5))
    finally:
        hub.stop()
