"""The benchmarks keep running: each prints its side-by-side table in a short run. No timing is asserted
(machines are noisy); the numbers must be present and positive for both runtimes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_bench(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def numbers(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"(?<![\w.])\d+(?:\.\d+)?", line)]


def test_codec_bench_table() -> None:
    out = run_bench("bench/codec.py", "--quick")
    assert "CPython" in out and "MicroPython" in out
    rows = [ln for ln in out.splitlines() if ln.startswith(("crc16", "cobs", "frame", "msgpack"))]
    assert len(rows) == 7, out
    for row in rows:
        rates = re.findall(r"([\d.]+) [kMG]?B/s", row)
        assert len(rates) == 2 and all(float(r) > 0 for r in rates), row


def test_rules_bench_table() -> None:
    out = run_bench("bench/rules.py", "--ticks", "2000")
    rows = [numbers(ln) for ln in out.splitlines() if re.match(r"\s*(1|20|100)\s+\d+", ln)]
    assert [int(r[0]) for r in rows] == [1, 20, 100], out
    assert all(r[2] > 0 and r[3] > 0 for r in rows), rows


@pytest.mark.slow
def test_link_bench_table() -> None:
    out = run_bench("bench/link.py", "--quick")
    rows = [ln for ln in out.splitlines() if ln.startswith(("fake", "virtual air"))]
    assert len(rows) == 6 and sum(ln.startswith("virtual air") for ln in rows) == 2, out
    for row in rows:
        rates = re.findall(r"\s(\d+)\s", row.split("  ", 1)[1])
        shares = re.findall(r"([\d.]+)%", row)[-2:]  # the two retry columns end the row
        assert len(shares) == 2 and all(0 <= float(x) < 100 for x in shares), row
        assert rates and int(rates[0]) > 0, row
        if "20% loss" in row:
            assert all(float(x) > 0 for x in shares), row  # loss forces retransmissions


@pytest.mark.slow
def test_boot_bench_heap_and_idle_uplink_allocation() -> None:
    import json

    out = json.loads(run_bench("bench/boot.py", "--json"))
    rows = {r["role"]: r for r in out["rows"]}
    assert set(rows) == {"gateway", "node"}
    for r in rows.values():
        assert r["heap_before"] > 0 and r["heap_after"] > 0
    # the idle gateway's uplink loop allocates nothing per second (ipoll, preallocated sleep awaitable);
    # before the change it allocated on every pass (poll() lists, a coroutine and a float per await)
    assert rows["gateway"]["uplink_idle_alloc_per_s_after"] == 0, rows
    assert rows["gateway"]["uplink_idle_alloc_per_s_before"] > 0, rows


@pytest.mark.slow
def test_rx_alloc_bench_receive_path_allocates_no_more_than_before() -> None:
    import json

    out = json.loads(run_bench("bench/rx_alloc.py", "--json"))
    rows = {r["frame"]: r for r in out["rows"]}
    assert set(rows) == {"duplicate", "duplicate_ack", "unsequenced", "bad_tag", "stray_ack", "new"}
    for r in rows.values():
        # the receiver as an object with bound-method callbacks adds no allocation per frame
        assert 0 < r["after"] <= r["before"], rows


def test_ota_transfer_bench_rows_and_json() -> None:
    import json
    out = run_bench("bench/ota_transfer.py", "--quick", "--json")
    d = json.loads(out.strip().splitlines()[-1])
    # protocol properties from counted bytes (docs/protocol.md "OTA chunk transfer"), not timings
    assert 0.8 <= d["efficiency"] < 1 and 0 < d["efficiency_loss20"] < d["efficiency"], d
    assert 0 < d["resent_per_lost_loss20"] < 1.5, d
    assert all(d[k] > 0 for k in ("kbps_virtual_air", "kbps_virtual_air_loss20", "kbps_virtual_air_cpython",
                                  "kbps_virtual_air_loss20_cpython")), d


def test_ota_bench_json_and_table() -> None:
    import json
    # issue 13: `python bench/ota.py --json` is one JSON object with efficiency and efficiency_loss20
    out = run_bench("bench/ota.py", "--quick", "--n", "3", "--json")
    d = json.loads(out.strip().splitlines()[-1])
    assert 0.8 <= d["efficiency"] < 1 and 0 < d["efficiency_loss20"] < d["efficiency"], d
    assert d["ed25519_verify_ms"] > 0 and d["ed25519_verify_ms_cpython"] > 0 and d["kbps_virtual_air_loss20"] > 0, d
    table = run_bench("bench/ota.py", "--quick", "--n", "3")
    assert "verify" in table and "efficiency" in table.lower(), table


def test_bridge_bench_json() -> None:
    import json
    r = json.loads(run_bench("bench/bridge.py", "--quick", "--json").strip().splitlines()[-1])
    assert r["messages"] == 2000
    assert all(r[k] > 0 for k in ("ceiling", "bridge", "replay", "db_bytes_per_message")), r


@pytest.mark.slow
def test_fleet_bench_delivers_everything_stored() -> None:
    import json
    r = json.loads(run_bench("bench/fleet.py", "--quick", "--json").strip().splitlines()[-1])
    assert r["nodes_reporting"] == r["nodes"] == 100, r
    assert r["stored"] > 0 and r["delivered"] == r["stored"] and r["lost"] == 0, r
    assert 0 < r["latency_ms_p50"] <= r["latency_ms_p99"], r


@pytest.mark.slow
def test_native_bench_table_and_json() -> None:
    """bench/native.py builds the x64 natmod (a missing toolchain fails) and prints natmod, pure
    MicroPython and viper side by side; --json carries the speedups."""
    import json

    out = run_bench("bench/native.py", "--quick")
    rows = [ln for ln in out.splitlines() if ln.startswith(("framing", "VM tick"))]
    # five protocol frame sizes and the realistic mix (docs/native.md), then VM ticks for 1, 20, 100 rules
    assert len(rows) == 9, out
    for row in rows[:6]:
        rates = re.findall(r"([\d.]+) MB/s", row)
        assert len(rates) == 3 and all(float(r) > 0 for r in rates), row
    for row in rows[6:]:
        rates = re.findall(r"(\d+) t/s", row)
        assert len(rates) == 2 and all(int(r) > 0 for r in rates), row
    assert "natmod call floor" in out and "targets" in out, out
    data = json.loads(run_bench("bench/native.py", "--quick", "--json"))
    for key in ("framing_speedup", "vm_speedup_20", "vm_speedup_1", "vm_speedup_100", "framing_speedup_1024",
                "framing_speedup_12"):
        assert data[key] > 0, key
    assert data["framing_speedup"] == data["framing_speedup_mix"]
