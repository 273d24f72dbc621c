"""Bridge configuration, service files and the web API (FastAPI TestClient) against a scripted gateway:
authentication beyond 127.0.0.1, same-origin POSTs, devices/telemetry/commands/pairing/time sync,
OpenAPI and Prometheus metrics."""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "system"))
from bridge_support import ScriptedGateway, tel, wait_until  # noqa: E402
from fieldlink_host.bridge.config import BridgeConfig, WebConfig, load_config  # noqa: E402
from fieldlink_host.bridge.core import Bridge  # noqa: E402
from fieldlink_host.bridge.run import redact  # noqa: E402
from fieldlink_host.bridge.service import MARKER, install_service  # noqa: E402
from fieldlink_host.bridge.web import create_app  # noqa: E402
from fieldlink_host.errors import FieldlinkError  # noqa: E402

N1 = "020000000001"


def test_config_file_env_and_options(tmp_path: Path) -> None:
    f = tmp_path / "b.toml"
    f.write_text('port = "/dev/ttyX"\ndb = "a.db"\nsite = "north"\n[mqtt]\nurl = "mqtts://broker:8883"\n'
                 'username = "u"\n[web]\nlisten = "0.0.0.0:8080"\ntoken = "t0k"\n[retention]\nhours = 24\n')
    cfg = load_config(f, env={"FIELDLINK_BRIDGE_MQTT_PASSWORD": "pw", "FIELDLINK_BRIDGE_SITE": "south"},
                      db="b.db")
    assert (cfg.port, cfg.db, cfg.site, cfg.retention_hours) == ("/dev/ttyX", "b.db", "south", 24.0)
    assert cfg.mqtt.endpoint() == ("broker", 8883, True) and cfg.mqtt.password == "pw"
    cfg.check()
    f.write_text("[web]\nlisten = \"10.0.0.5:80\"\n")
    with pytest.raises(FieldlinkError, match="needs authentication"):
        load_config(f, env={}, db="x.db").check()
    f.write_text("nope = 1\n")
    with pytest.raises(FieldlinkError, match="unknown setting 'nope'"):
        load_config(f, env={})
    f.write_text("site = [\n")
    with pytest.raises(FieldlinkError, match=str(f)):
        load_config(f, env={})
    with pytest.raises(FieldlinkError, match="mqtt://host"):
        load_config(None, env={}, db="x", mqtt_url="http://x").check()
    assert redact("mqtt://u:secret@h:1883") == "mqtt://u:***@h:1883"


def test_install_service_writes_unit_and_rule_and_never_overwrites_foreign_files(tmp_path: Path) -> None:
    unit, rule = install_service(tmp_path, "/etc/fieldlink/bridge.toml", vendor="303A", product="1001",
                                 serial="ABC")
    text = unit.read_text()
    assert "Restart=always" in text and "After=network-online.target" in text
    assert "bridge --config /etc/fieldlink/bridge.toml" in text
    r = rule.read_text()
    assert 'ATTRS{idVendor}=="303a"' in r and 'SYMLINK+="fieldlink-gw"' in r and 'ATTRS{serial}=="ABC"' in r
    install_service(tmp_path, "/etc/fieldlink/other.toml")            # ours: rewritten
    assert "other.toml" in unit.read_text()
    foreign = tmp_path / "99-mine.rules"
    foreign.write_text("# my own rule\n")
    (tmp_path / "x").mkdir()
    with pytest.raises(FieldlinkError, match="not written by fieldlink"):
        install_service(tmp_path / "x", "c.toml", name="mine", udev_dir=tmp_path)
    assert foreign.read_text() == "# my own rule\n"
    assert not (tmp_path / "x" / "fieldlink-bridge.service").exists()   # nothing half-written
    assert unit.read_text().startswith(MARKER)


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[tuple[Bridge, ScriptedGateway]]:
    gw = ScriptedGateway(tmp_path)
    b = Bridge(BridgeConfig(port=gw.path, db=str(tmp_path / "w.db"), bridge_id="w")).start()
    wait_until(lambda: any(m.get("t") == "hello" for m in gw.host_msgs), 15, "hello")
    gw.send({"t": "nhb", "from": N1, "rssi": -40, "d": {"up": 5, "boot": 1, "fw": "0.1.0", "relays": {"fan": False}}})
    for q in range(1, 6):
        gw.send(tel(N1, 1, q, 20.0 + q))
    wait_until(lambda: len(b.store.history(N1)) == 5, 20, "telemetry stored")
    yield b, gw
    b.stop()
    gw.close()


def test_api_pages_commands_metrics_on_loopback(bridge: tuple[Bridge, ScriptedGateway]) -> None:
    b, gw = bridge
    c = TestClient(create_app(b, WebConfig(listen="127.0.0.1:8080")), base_url="http://127.0.0.1:8080")
    devs = c.get("/api/devices").json()
    assert [d["mac"] for d in devs] == [N1] and devs[0]["relays"] == {"fan": False}
    rows = c.get("/api/telemetry", params={"node": N1, "sensor": "sht"}).json()["rows"]
    assert [r["value"] for r in rows] == [21.0, 22.0, 23.0, 24.0, 25.0]
    assert c.get("/api/telemetry", params={"node": "nope"}).status_code == 404
    page = c.get("/").text
    assert N1 in page and "fan: OFF" in page and "<script src" not in page and "http" not in page.split("<main>")[1]
    node = c.get(f"/node/{N1}").text
    assert "<svg" in node and "<polyline" in node
    # a relay toggle reaches the gateway and its result comes back
    r = c.post(f"/api/devices/{N1}/relay/fan", json={"op": "on"}).json()
    assert r["state"] == "done" and r["r"]["on"] is True
    assert any(m.get("t") == "cmd" and m.get("op") == "relay" and m.get("to") == N1 for m in gw.host_msgs)
    assert c.get("/api/devices").json()[0]["relays"] == {"fan": True}
    assert c.get(f"/api/devices/{N1}/relay/fan").status_code == 405    # state changes are POSTs only
    assert c.post(f"/api/devices/{N1}/relay/nope", json={"op": "on"}).status_code == 404
    assert c.post(f"/api/devices/{N1}/relay/fan", json={"op": "explode"}).status_code == 422
    assert c.post("/api/pairing", json={"seconds": 60}).json()["state"] == "done"
    assert c.get("/api/info").json()["permit_join"] is True
    assert c.post("/api/time_sync").json()["state"] == "done"
    assert any(x["op"] == "relay" for x in c.get("/api/commands").json())
    # cross-site POST refused, same-origin accepted
    assert c.post("/api/time_sync", headers={"Origin": "http://evil.example"}).status_code == 403
    assert c.post("/api/time_sync", headers={"Origin": "http://127.0.0.1:8080"}).status_code == 200
    spec = c.get("/openapi.json").json()
    assert {"/api/devices", "/api/telemetry", "/api/pairing", "/api/time_sync"} <= set(spec["paths"])
    m = c.get("/metrics").text
    assert "fieldlink_bridge_nodes 1.0" in m and "fieldlink_bridge_readings_total 5.0" in m
    assert f'fieldlink_node_rssi_dbm{{node="{N1}"}} -50.0' in m


def test_auth_required_beyond_loopback(bridge: tuple[Bridge, ScriptedGateway]) -> None:
    b, _ = bridge
    with pytest.raises(FieldlinkError, match="needs"):
        create_app(b, WebConfig(listen="0.0.0.0:8080"))
    app = create_app(b, WebConfig(listen="0.0.0.0:8080", user="admin", password="s3cret", token="tok"))
    c = TestClient(app, base_url="http://farm.lan:8080")
    for path in ("/", "/api/devices", "/metrics", "/openapi.json", f"/node/{N1}"):
        r = c.get(path)
        assert r.status_code == 401 and "Basic" in r.headers["www-authenticate"], path
    assert c.post("/api/time_sync").status_code == 401
    good = base64.b64encode(b"admin:s3cret").decode()
    bad = base64.b64encode(b"admin:wrong").decode()
    assert c.get("/api/devices", headers={"Authorization": f"Basic {bad}"}).status_code == 401
    assert c.get("/api/devices", headers={"Authorization": f"Basic {good}"}).status_code == 200
    assert c.get("/api/devices", headers={"Authorization": "Bearer tok"}).status_code == 200
    assert c.get("/api/devices", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_cli_help_examples_and_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fieldlink_host.cli import main

    with pytest.raises(SystemExit):
        main(["bridge", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "--mqtt mqtt://127.0.0.1:1883" in out and "install-service" in out
    assert main(["bridge", "--db", str(tmp_path / "x.db")]) == 1
    assert main(["bridge", "--port", "/dev/null", "--db", str(tmp_path / "x.db"), "--web", "0.0.0.0:8080"]) == 1
    assert main(["bridge", "--port", "/dev/null", "--db", str(tmp_path / "x.db"), "--mqtt", "ftp://x"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("fieldlink: error: ") for line in err), err
    assert "Traceback" not in "".join(err)
    assert main(["bridge", "install-service", "--dir", str(tmp_path)]) == 0
    assert (tmp_path / "fieldlink-bridge.service").exists() and (tmp_path / "99-fieldlink-gw.rules").exists()
