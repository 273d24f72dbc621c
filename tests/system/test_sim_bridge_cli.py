"""`fieldlink sim --web ADDR [--mqtt URL] [--db FILE]`: the virtual farm with the bridge and the page as one
command. With no broker the bridge still stores and serves; GET /api/devices lists the virtual nodes; with
--mqtt the telemetry reaches a real Mosquitto; SIGTERM stops everything cleanly."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bridge_support import Mosquitto, Subscriber, free_port, wait_until  # noqa: E402
from fieldlink_host.farm import mac_hex, node_mac  # noqa: E402


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - 127.0.0.1 only
        return json.loads(r.read())


def test_sim_with_web_mqtt_and_db(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path).start()
    sub = Subscriber(broker.port, ["fieldlink/v1/sim/+/telemetry/#"])
    port = free_port()
    db = tmp_path / "farm.db"
    proc = subprocess.Popen([sys.executable, "-m", "fieldlink_host", "sim", "--web", f"127.0.0.1:{port}",
                             "--mqtt", broker.url, "--db", str(db), "--seconds", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    nodes = sorted(mac_hex(node_mac(i)) for i in (1, 2, 3))
    try:
        def devices() -> list[str]:
            try:
                return sorted(d["mac"] for d in get_json(f"http://127.0.0.1:{port}/api/devices"))  # type: ignore[union-attr,index]
            except OSError:
                return []
        wait_until(lambda: devices() == nodes, 90, "GET /api/devices lists the 3 virtual nodes")
        wait_until(lambda: {t.split("/")[3] for t, _ in sub.json(lambda t: True)} == set(nodes), 60,
                   "telemetry of the 3 nodes on MQTT")
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0]
        assert proc.returncode == 0, out
        assert "Traceback" not in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sub.close()
        broker.stop()
    con = sqlite3.connect(str(db))
    try:
        stored = {r[0] for r in con.execute("SELECT DISTINCT node FROM telemetry")}
    finally:
        con.close()
    assert stored == set(nodes)
    assert not list(tmp_path.glob("fieldlink-farm-*")), "the farm cleaned up"
