"""Bridge throughput against a real Mosquitto, side by side in one run:

  ceiling  bare paho-mqtt QoS 1 publisher (same payload size, same in-flight window): the most the
           broker + paho allow on this machine
  bridge   a scripted gateway stream over a pseudo-terminal, decoded + committed to SQLite + acked +
           published QoS 1 (time until the broker acknowledged the last message)
  replay   the same number of messages stored while the broker was away, published on reconnect
           (timed from the moment the broker connection is up)
  bytes    SQLite bytes per stored message (after a WAL checkpoint)

Ratios are against the ceiling of the same round; the machine's load moves between measurements, so
several rounds run and the median ratio is reported (with the rates of the median round).
Usage: python bench/bridge.py [--messages N] [--rounds 3] [--quick] [--thread] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "host"), str(ROOT / "device")]

import msgpack  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from fieldlink.codec.serialframe import encode_frame  # noqa: E402
from fieldlink_host.bridge.config import BridgeConfig, MqttConfig  # noqa: E402
from fieldlink_host.bridge.core import Bridge  # noqa: E402

NODES = 10
#: publisher in its own process (the default) or a thread of the bridge (--thread)
PROCESS = True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    exe = "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else shutil.which("mosquitto")
    if not exe:
        raise SystemExit("bench/bridge.py: mosquitto not found (apt-get install -y mosquitto)")
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 0\nmax_inflight_messages 0\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return proc, port
        except OSError:
            if time.monotonic() > end:
                raise SystemExit("bench/bridge.py: mosquitto did not start") from None
            time.sleep(0.05)


def tel(g: int, s: int, i: int) -> dict:
    node = f"0200000000{i % NODES:02x}"
    return {"t": "tel", "g": g, "s": s, "from": node, "rssi": -50,
            "d": {"q": s, "boot": 1, "r": [["sht", {"temperature": 20.0 + (s % 50) / 10,
                                                    "relative_humidity": 55.5}, 250]]}}


def ceiling(port: int, n: int, payload: bytes, inflight: int) -> float:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-ceiling")
    c.max_inflight_messages_set(inflight)
    done = threading.Event()
    acked = [0]

    def on_pub(*_a: object) -> None:
        acked[0] += 1
        if acked[0] == n:
            done.set()
    c.on_publish = on_pub
    c.connect("127.0.0.1", port)
    c.loop_start()
    t0 = time.perf_counter()
    for i in range(n):
        c.publish(f"bench/ceiling/{i % NODES}", payload, qos=1)
    done.wait(300)
    dt = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return n / dt


class PtyGateway:
    """Writes a prepared stream of frames into a pty; the bridge opens the slave by name."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self._stop = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:   # host -> gateway bytes (acks, hello) are read and ignored
        import select
        while not self._stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.1)
            if r:
                try:
                    os.read(self.master, 65536)
                except OSError:
                    return

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.master, view[:4096])
            view = view[n:]

    def close(self) -> None:
        self._stop.set()
        time.sleep(0.15)
        os.close(self.master)
        os.close(self.slave)


def wait(pred, timeout: float = 600) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise SystemExit("bench/bridge.py: timed out")
        time.sleep(0.005)


def measure(tmp: Path, port: int, n: int, stream: bytes, r: int) -> dict[str, float]:
    """One round: ceiling, bridge and replay back to back (the machine's load moves between rounds)."""
    cfg = BridgeConfig(db=str(tmp / f"b{r}.db"), bridge_id=f"bench{r}", discovery=False,
                       mqtt=MqttConfig(url=f"mqtt://127.0.0.1:{port}", process=PROCESS))
    # one bridge-shaped payload for the ceiling
    sample = json.dumps({"id": "bench:1", "seq": 1, "node": "020000000001", "name": None, "sensor": "sht",
                         "values": {"temperature": 21.5, "relative_humidity": 55.5}, "ts": 1796626388260,
                         "time": "2026-12-07T06:53:08.260Z", "age_ms": 250, "rssi": -50,
                         "msg": {"boot": 1, "q": 1, "i": 0}}, separators=(",", ":")).encode()
    ceil = ceiling(port, n, sample, cfg.mqtt.inflight)

    gw = PtyGateway()
    bridge = Bridge(cfg, gw.path).start()
    assert bridge.publisher is not None
    wait(lambda: bridge.client is not None and bridge.publisher is not None and bridge.publisher.connected.is_set())
    time.sleep(0.3)
    base = bridge.publisher.stats["published"]
    t0 = time.perf_counter()
    threading.Thread(target=gw.write, args=(stream,), daemon=True).start()
    wait(lambda: bridge.counters["readings"] >= n and bridge.publisher is not None
         and bridge.publisher.stats["published"] - base >= n)
    bridge_rate = n / (time.perf_counter() - t0)
    bridge.stop()
    gw.close()

    # replay: store n more with no broker configured, then publish them all at once
    cfg2 = BridgeConfig(db=str(tmp / f"r{r}.db"), bridge_id=f"bench-r{r}", discovery=False)
    gw = PtyGateway()
    b2 = Bridge(cfg2, gw.path).start()
    wait(lambda: b2.client is not None)
    gw.write(stream)
    wait(lambda: b2.counters["readings"] >= n)
    b2.stop()
    gw.close()
    con = sqlite3.connect(str(tmp / f"r{r}.db"))
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    backlog = con.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    con.close()
    size = (tmp / f"r{r}.db").stat().st_size
    cfg3 = BridgeConfig(db=str(tmp / f"r{r}.db"), bridge_id=f"bench-r{r}", discovery=False,
                        mqtt=MqttConfig(url=f"mqtt://127.0.0.1:{port}", process=PROCESS))
    gw = PtyGateway()
    b3 = Bridge(cfg3, gw.path).start()
    assert b3.publisher is not None
    # from the moment the broker connection is up (what an outage's end looks like to a running bridge;
    # the publisher process's start is not part of it); only what was published after that counts
    wait(lambda: b3.publisher is not None and b3.publisher.connected.is_set(), 60)
    t0 = time.perf_counter()
    base = b3.publisher.stats["published"]
    wait(lambda: b3.publisher is not None and b3.publisher.stats["published"] >= backlog)
    replay_rate = (backlog - base) / (time.perf_counter() - t0)
    b3.stop()
    gw.close()
    return {"ceiling": ceil, "bridge": bridge_rate, "replay": replay_rate, "db_bytes_per_message": size / n}


def run(n: int, rounds: int = 3) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="fieldlink-bench-bridge-"))
    broker, port = start_broker(tmp)
    try:
        stream = b"".join(encode_frame(msgpack.packb(tel(1, s, s), use_bin_type=True)) for s in range(1, n + 1))
        got = [measure(tmp, port, n, stream, r) for r in range(rounds)]
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    # the round whose bridge ratio is the median (rates of one round, never mixed across rounds); the
    # median ratios are given for both paths
    order = sorted(got, key=lambda g: g["bridge"] / g["ceiling"])
    mid = order[len(order) // 2]
    return {"messages": n, "rounds": rounds, "ceiling": round(mid["ceiling"], 1), "bridge": round(mid["bridge"], 1),
            "replay": round(mid["replay"], 1), "db_bytes_per_message": round(mid["db_bytes_per_message"], 1),
            "bridge_ratio": round(statistics.median(g["bridge"] / g["ceiling"] for g in got), 3),
            "replay_ratio": round(statistics.median(g["replay"] / g["ceiling"] for g in got), 3),
            "per_round": [{k: round(v, 1) for k, v in g.items()} for g in got]}


def main() -> None:
    global PROCESS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=20000, help="messages per measurement (default 20000)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of ceiling/bridge/replay (default 3; median)")
    ap.add_argument("--quick", action="store_true", help="2000 messages, 1 round")
    ap.add_argument("--thread", action="store_true", help="publisher thread in the bridge process "
                    "([mqtt] process = false) instead of its own process")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    PROCESS = not args.thread
    r = run(2000 if args.quick else args.messages, 1 if args.quick else max(1, args.rounds))
    if args.json:
        print(json.dumps(r))
        return
    print(f"bridge bench: {r['messages']} messages, QoS 1, one Mosquitto on 127.0.0.1, "
          f"publisher {'thread' if args.thread else 'process'}, {r['rounds']} round(s)")
    print(f"{'round':6} {'ceiling':>9} {'bridge':>9} {'%':>6} {'replay':>9} {'%':>6}")
    for i, g in enumerate(r["per_round"]):  # type: ignore[arg-type]
        c = g["ceiling"]
        print(f"{i + 1:<6} {c:9.0f} {g['bridge']:9.0f} {100 * g['bridge'] / c:5.1f}% {g['replay']:9.0f} "
              f"{100 * g['replay'] / c:5.1f}%")
    print(f"median of ceiling: bridge {100 * r['bridge_ratio']:.1f}%, replay {100 * r['replay_ratio']:.1f}%")  # type: ignore[operator]
    print(f"sqlite bytes per stored message: {r['db_bytes_per_message']:.0f}")


if __name__ == "__main__":
    main()
