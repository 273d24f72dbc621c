"""Fleet bench: N virtual nodes across G gateways (one air hub + gateway + bridge each, nodes packed 50
per micropython process as the system tests do) into ONE Mosquitto. Prints delivered/lost telemetry
readings (stored by the bridges vs received by one subscriber) and node-to-subscriber latency p50/p99
(measured time of a reading -> arrival at the subscriber; includes the node's batching delay).

Usage: python bench/fleet.py [--nodes 1000] [--gateways 4] [--seconds 60] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "host"), str(ROOT / "device"), str(ROOT / "bench")]

import paho.mqtt.client as mqtt  # noqa: E402
from bridge import start_broker  # noqa: E402
from fieldlink_host.bridge.config import BridgeConfig, MqttConfig  # noqa: E402
from fieldlink_host.bridge.core import Bridge  # noqa: E402
from fieldlink_host.farm import Farm  # noqa: E402
from fieldlink_host.virtual import VirtualBoard  # noqa: E402

PER_PROC = 50
ENTRY_DIR = ROOT / "tests" / "system"


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def run(nodes: int, gateways: int, seconds: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="fieldlink-bench-fleet-"))
    broker, port = start_broker(tmp)
    got: dict[str, float] = {}
    lat: list[float] = []
    lock = threading.Lock()

    def on_msg(c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        now = time.time() * 1000
        try:
            p = json.loads(m.payload)
        except ValueError:
            return
        with lock:
            if p["id"] not in got:
                got[p["id"]] = now
                lat.append(now - p["ts"])

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-sub")
    sub.on_message = on_msg
    sub.on_connect = lambda c, *a: c.subscribe("fieldlink/v1/+/+/telemetry/#", qos=1)
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    farms: list[Farm] = []
    bridges: list[Bridge] = []
    procs: list[VirtualBoard] = []
    per_gw = nodes // gateways
    try:
        for g in range(gateways):
            farm = Farm(nodes=0, workdir=tmp / f"gw{g}", seed=20 + g).start()
            farms.append(farm)
            farm.disconnect()
            port_obj = farm.port
            cfg = BridgeConfig(db=str(tmp / f"gw{g}.db"), bridge_id=f"b{g}", site=f"site{g}", discovery=False,
                               mqtt=MqttConfig(url=f"mqtt://127.0.0.1:{port}"))
            bridges.append(Bridge(cfg, lambda p=port_obj: p).start())  # type: ignore[misc]
            assert farm.air is not None
            base = 1 + g * per_gw
            left = per_gw
            k = 0
            while left > 0:
                cnt = min(PER_PROC, left)
                vb = VirtualBoard(tmp / f"gw{g}" / f"multi{k}", mac=f"02:0e:00:00:{g:02x}:{k:02x}", air=farm.air,
                                  entry="multinode_entry:main", extra_path=[ENTRY_DIR], chips=False,
                                  name=f"g{g}m{k}", env={"MULTI_BASE": str(base), "MULTI_COUNT": str(cnt),
                                                          "MULTI_INTERVAL_MS": "8000", "MULTI_IDLE_MS": "20"})
                procs.append(vb.start())
                base += cnt
                left -= cnt
                k += 1
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            time.sleep(1)
        for vb in procs:            # stop the sources, then let the pipeline drain
            vb.stop()
        end = time.monotonic() + 60
        while time.monotonic() < end and any(b.publisher and b.publisher.backlog() for b in bridges):
            time.sleep(0.5)
        time.sleep(2)
        stored = sum(b.counters["readings"] for b in bridges)
        reporting = sum(len(b.devices) for b in bridges)
    finally:
        for vb in procs:
            vb.stop()
        for b in bridges:
            b.stop()
        for f in farms:
            f.stop()
        sub.disconnect()
        sub.loop_stop()
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    delivered = len(got)
    return {"nodes": nodes, "gateways": gateways, "seconds": seconds, "nodes_reporting": reporting,
            "stored": stored, "delivered": delivered, "lost": max(0, stored - delivered),
            "latency_ms_p50": round(pct(lat, 50), 1), "latency_ms_p99": round(pct(lat, 99), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--gateways", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60.0, help="how long the nodes report")
    ap.add_argument("--quick", action="store_true", help="100 nodes, 2 gateways, 20 s")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    r = run(100, 2, 20.0) if a.quick else run(a.nodes, a.gateways, a.seconds)
    if a.json:
        print(json.dumps(r))
        return
    print(f"fleet bench: {r['nodes']} virtual nodes, {r['gateways']} gateways + bridges, one Mosquitto, "
          f"{r['seconds']:.0f} s")
    print(f"{'nodes reporting':18} {r['nodes_reporting']}")
    print(f"{'readings stored':18} {r['stored']}")
    print(f"{'delivered':18} {r['delivered']}")
    print(f"{'lost':18} {r['lost']}")
    print(f"{'latency p50':18} {r['latency_ms_p50']} ms")
    print(f"{'latency p99':18} {r['latency_ms_p99']} ms")


if __name__ == "__main__":
    main()
