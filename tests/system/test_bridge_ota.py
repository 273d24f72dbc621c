"""OTA through the bridge (docs/bridge.md "OTA") on the virtual farm (real micropython gateway and nodes,
real ESP-NOW link over the air hub) with a real Mosquitto: Zigbee2MQTT-style check / update requests on
MQTT, the node's update state in its state topic (available -> scheduled/updating with progress -> idle
with the new installed version), the Home Assistant ``update`` entity, and bad requests (unknown device,
missing manifest, a package outside the OTA directory, a tampered package) answered with an error while
the bridge keeps running.

The farm's boards run from source (no app slots), so the update is a signed **rules** package (the kind
the farm takes end to end, docs/ota.md "Trust store"); each node trusts the owner key from
``owner_keys.json`` next to its board config."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bridge_support import Mosquitto, Subscriber, wait_until  # noqa: E402
from fieldlink_host.bridge.config import BridgeConfig, MqttConfig  # noqa: E402
from fieldlink_host.bridge.core import Bridge  # noqa: E402
from fieldlink_host.build import owner_keys_document  # noqa: E402
from fieldlink_host.farm import Farm, mac_hex, node_mac  # noqa: E402
from fieldlink_host.keys import new_keypair  # noqa: E402
from fieldlink_host.ota.package import make_package  # noqa: E402
from fieldlink_host.rules.compiler import compile_file  # noqa: E402
from fieldlink_host.signing import encode_manifest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ROOT_T = "fieldlink/v1/farm"
RESP = f"{ROOT_T}/bridge/response/device/ota_update"
REQ = f"{ROOT_T}/bridge/request/device/ota_update"

#: Home Assistant's MQTT update platform, configuration variables as documented
#: (home-assistant.io/integrations/update.mqtt) plus the discovery-only ``device``/``origin``/``unique_id``
HA_UPDATE_KEYS = {
    "availability", "availability_topic", "availability_mode", "availability_template", "command_topic",
    "device", "device_class", "display_precision", "enabled_by_default", "encoding", "entity_category",
    "entity_picture", "icon", "json_attributes_template", "json_attributes_topic", "latest_version_template",
    "latest_version_topic", "name", "object_id", "default_entity_id", "payload_install", "platform", "qos",
    "release_summary", "release_url", "retain", "state_topic", "title", "unique_id", "value_template", "origin",
}
HA_DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
                  "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device"}


def render_ha(template: str, payload: Any) -> str:
    """Render a template the way Home Assistant's MQTT integration does: a sandboxed Jinja environment,
    ``value_json`` = the parsed payload, HA's ``to_json`` filter."""
    env = ImmutableSandboxedEnvironment()
    env.filters["to_json"] = json.dumps
    return env.from_string(template).render(value_json=payload, value=json.dumps(payload))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path).start()
    yield b
    b.stop()


def responses(sub: Subscriber, action: str, transaction: str) -> list[dict[str, Any]]:
    return [p for _, p in sub.json(lambda t: t == f"{RESP}/{action}")
            if isinstance(p, dict) and p.get("transaction") == transaction]


def ask(sub: Subscriber, action: str, body: dict[str, Any] | str, transaction: str | None = None,
        timeout: float = 90) -> dict[str, Any]:
    if isinstance(body, dict) and transaction is not None:
        body = {**body, "transaction": transaction}
    sub.publish(f"{REQ}/{action}", body if isinstance(body, str) else json.dumps(body))
    assert transaction is not None
    wait_until(lambda: bool(responses(sub, action, transaction)), timeout, f"response {action} {transaction}")
    return responses(sub, action, transaction)[0]


def states(sub: Subscriber, mac: str) -> list[dict[str, Any]]:
    return [p["update"] for _, p in sub.json(lambda t: t == f"{ROOT_T}/{mac}/state")
            if isinstance(p, dict) and isinstance(p.get("update"), dict)]


def rules_package(tmp_path: Path, version: str, counter: int, name: str) -> tuple[Any, Path]:
    """(owner key pair, ota directory) holding a signed rules package OTA_DIR/name for sim-node."""
    kp = new_keypair(tmp_path / "keys")
    prog = compile_file(ROOT / "tests" / "fixtures" / "rules" / "greenhouse.rules.yaml", "sim-node").program
    ota = tmp_path / "ota"
    ota.mkdir()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "gh.bin").write_bytes(prog)
    make_package(tmp_path / "src" / "gh.bin", kp.private, kind="rules", board="sim-node", version=version,
                 counter=counter, out=ota / name)
    return kp, ota


def test_check_update_state_ha_entity_and_bad_requests(tmp_path: Path, broker: Mosquitto) -> None:
    kp, ota = rules_package(tmp_path, "gh-2", 7, "gh")
    # a tampered copy: same payload, the version changed in the signed manifest (re-encoded canonically)
    (ota / "tampered").mkdir()
    m = json.loads((ota / "gh.ota.json").read_bytes())
    m["version"] = "gh-9"
    m["counter"] = 9
    (ota / "tampered" / "gh.ota.json").write_bytes(encode_manifest(m))
    shutil.copy(ota / "gh.ota.sig", ota / "tampered" / "gh.ota.sig")
    shutil.copy(ota / "gh.ota.bin", ota / "tampered" / "gh.ota.bin")
    work = tmp_path / "farm"
    for i in (1, 2):   # the owner key each node trusts (installed at build/deploy time)
        (work / f"node{i}").mkdir(parents=True)
        (work / f"node{i}" / "owner_keys.json").write_bytes(owner_keys_document([kp.public]))
    n1, n2 = mac_hex(node_mac(1)), mac_hex(node_mac(2))
    sub = Subscriber(broker.port, ["fieldlink/#", "homeassistant/#"])
    with Farm(nodes=2, workdir=work, seed=5, node_options={"telemetry_batch": 1}) as farm:
        farm.disconnect()
        port = farm.port
        assert port is not None
        cfg = BridgeConfig(db=str(tmp_path / "b.db"), bridge_id="ota1", mqtt=MqttConfig(url=broker.url),
                           ota_dir=str(ota), ota_key=str(kp.public), cmd_timeout_s=20.0,
                           ota_confirm_timeout_s=60.0, ota_timeout_s=120.0)
        bridge = Bridge(cfg, lambda: port).start()  # type: ignore[arg-type,return-value]
        try:
            wait_until(lambda: n1 in bridge.devices and n2 in bridge.devices, 90, "both nodes known")
            disc_topic = f"homeassistant/update/fieldlink_{n1}/firmware/config"
            wait_until(lambda: any(t == disc_topic for t, _ in sub.json(lambda t: t.startswith("homeassistant/"))),
                       60, "update entity discovery")

            # check: the newest good package for the node's board is newer than what it has
            r = ask(sub, "check", {"id": n1}, "c1")
            assert r["status"] == "ok", r
            assert r["data"]["id"] == n1 and r["data"]["update_available"] is True
            assert r["data"]["kind"] == "rules" and r["data"]["latest_version"] == "gh-2"
            assert r["data"]["installed_version"] is None        # no rules update installed yet
            assert r["data"]["skipped"] == ["tampered/gh.ota.json: bad signature"], r["data"]
            assert r["data"]["manifest"] == "gh.ota.json"
            wait_until(lambda: any(u["state"] == "available" and u["latest_version"] == "gh-2"
                                   for u in states(sub, n1)), 30, "state available")

            # bad requests: an error response each, the bridge keeps running
            bad = {
                "u1": ("check", {"id": "nosuchnode"}, "Device 'nosuchnode' does not exist"),
                "u2": ("update", {"id": n1, "manifest": "missing.ota.json"}, "not found in the OTA directory"),
                "u3": ("update", {"id": n1, "manifest": "tampered/gh.ota.json"}, "bad signature"),
                "u4": ("check", {"id": n1, "manifest": "../src/x.ota.json"}, "outside the OTA directory"),
                "u5": ("check", {"id": n1, "kind": "banana"}, "'kind' must be one of"),
                "u6": ("upgrade", {"id": n1}, "unknown request ota_update/upgrade"),
                "u7": ("unschedule", {"id": n1}, "no update scheduled"),
            }
            for tr, (action, body, msg) in bad.items():   # one at a time: a second request for a node
                resp = ask(sub, action, body, tr)            # while one runs is refused ("in progress")
                assert resp["status"] == "error" and msg in resp["error"], (tr, resp)
            sub.publish(f"{REQ}/check", b"\xff\xfe not utf-8")
            wait_until(lambda: bridge.counters["bad_requests"] >= len(bad) + 1, 30, "undecodable request counted")

            # update: scheduled/updating with progress, then idle with the new version installed
            r = ask(sub, "update", {"id": n1}, "up1", timeout=180)
            assert r["status"] == "ok", r
            assert r["data"]["to"] == {"software_build_id": "gh-2"} and r["data"]["kind"] == "rules"
            seen = states(sub, n1)
            assert any(u["state"] == "updating" and isinstance(u.get("progress"), int | float) for u in seen), seen
            wait_until(lambda: states(sub, n1)[-1]["state"] == "idle", 30, "state idle")
            last = states(sub, n1)[-1]
            assert last["installed_version"] == last["latest_version"] == "gh-2" and "progress" not in last
            order = [u["state"] for u in states(sub, n1)]
            assert order.index("available") < order.index("updating") < len(order) - 1
            # the node itself runs the signed program now
            p = bridge.command_wait(n1, "status", {}, timeout=20, source="internal")
            assert p.result is not None and p.result["r"]["st"]["ota"]["versions"]["rules"] == "gh-2"
            assert p.result["r"]["st"]["ota"]["board"] == "sim-node"
            # a second check: nothing newer -> idle; the other node still has the update available
            r = ask(sub, "check", {"id": n1}, "c2")
            assert r["status"] == "ok" and r["data"]["update_available"] is False, r
            assert r["data"]["installed_version"] == "gh-2"
            sub.publish(f"{REQ}/check", n2)       # Zigbee2MQTT also takes the bare device id
            wait_until(lambda: any(p.get("data", {}).get("id") == n2 for _, p in sub.json(lambda t: t == f"{RESP}/check")),
                       60, "check of node 2")
            r = [p for _, p in sub.json(lambda t: t == f"{RESP}/check") if p.get("data", {}).get("id") == n2][0]
            assert r["status"] == "ok" and r["data"]["update_available"] is True and "transaction" not in r

            # the Home Assistant update entity, checked against the documented schema and rendered
            disc = dict(sub.json(lambda t: t == disc_topic))[disc_topic]
            # discovery configs are exactly HA's schema: no bridge message id/seq (docs/bridge.md)
            assert set(disc) <= HA_UPDATE_KEYS, set(disc) - HA_UPDATE_KEYS
            assert set(disc["device"]) <= HA_DEVICE_KEYS
            assert disc["device_class"] == "firmware" and disc["entity_category"] == "config"
            assert disc["state_topic"] == f"{ROOT_T}/{n1}/state"
            assert disc["command_topic"] == f"{REQ}/update" and json.loads(disc["payload_install"]) == {"id": n1}
            assert disc["unique_id"] == f"fieldlink_{n1}_update"
            assert disc["device"]["identifiers"] == [f"fieldlink_{n1}"]
            assert disc["device"]["via_device"] == "fieldlink_gw_farm_ota1"
            assert {a["topic"] for a in disc["availability"]} == {f"{ROOT_T}/{n1}/status", f"{ROOT_T}/bridge/state"}
            assert disc["availability_mode"] == "all" and disc["origin"]["name"] == "fieldlink"
            state_msgs = [p for _, p in sub.json(lambda t: t == f"{ROOT_T}/{n1}/state") if isinstance(p, dict)]
            updating = next(p for p in state_msgs if p["update"]["state"] == "updating" and "progress" in p["update"])
            rendered = json.loads(render_ha(disc["value_template"], updating))
            assert rendered["in_progress"] is True and rendered["update_percentage"] == updating["update"]["progress"]
            rendered = json.loads(render_ha(disc["value_template"], state_msgs[-1]))
            assert rendered == {"installed_version": "gh-2", "latest_version": "gh-2", "in_progress": False,
                                "update_percentage": None}
            assert json.loads(render_ha(disc["json_attributes_template"], state_msgs[-1]))["state"] == "idle"
            # HA's install button publishes payload_install on command_topic: that is an update request
            sub.publish(disc["command_topic"], disc["payload_install"])
            wait_until(lambda: any(p.get("status") == "error" and "No image currently available" in p.get("error", "")
                                   for _, p in sub.json(lambda t: t == f"{RESP}/update")), 60,
                       "install of an up-to-date node answered")
            assert bridge.client is not None and all(th.is_alive() for th in bridge._threads)
            assert bridge.counters["bad_uplink"] == 0      # the gateway's ota messages are known types
        finally:
            bridge.stop()
            sub.close()
        for b in farm.boards:
            assert b.running, b.lines[-30:]


def test_schedule_from_the_api_continues_after_a_bridge_restart_and_unschedule(tmp_path: Path,
                                                                              broker: Mosquitto) -> None:
    """``POST /api/devices/{id}/ota`` schedule -> the rollout runs over a lossy link; the bridge stops in
    the middle of the transfer and a new bridge on the same database continues it (the engine's state
    file and the job file) to the end. A second node's scheduled update is unscheduled: cancelled at the
    gateway, state back to available."""
    from fastapi.testclient import TestClient
    from fieldlink_host.bridge.config import WebConfig
    from fieldlink_host.bridge.web import create_app

    kp, ota = rules_package(tmp_path, "gh-3", 3, "gh3")
    work = tmp_path / "farm"
    for i in (1, 2):
        (work / f"node{i}").mkdir(parents=True)
        (work / f"node{i}" / "owner_keys.json").write_bytes(owner_keys_document([kp.public]))
    n1, n2 = mac_hex(node_mac(1)), mac_hex(node_mac(2))
    gw_mac = "02fe00000001"
    sub = Subscriber(broker.port, ["fieldlink/#"])
    # small chunks and windows: the ~1 KB update takes many windows, so a restart lands mid-transfer
    with Farm(nodes=2, workdir=work, seed=8, gateway_options={"ota_chunk": 24, "ota_window": 4},
              node_options={"telemetry_batch": 1}) as farm:
        farm.disconnect()
        port = farm.port
        assert port is not None and farm.air is not None
        cfg = BridgeConfig(db=str(tmp_path / "b.db"), bridge_id="ota2", mqtt=MqttConfig(url=broker.url),
                           ota_dir=str(ota), ota_key=str(kp.public), cmd_timeout_s=20.0,
                           ota_confirm_timeout_s=60.0, ota_timeout_s=240.0)
        bridge = Bridge(cfg, lambda: port).start()  # type: ignore[arg-type,return-value]
        restarted: Bridge | None = None
        stopped = False
        try:
            wait_until(lambda: n1 in bridge.devices and n2 in bridge.devices, 90, "both nodes known")
            web = TestClient(create_app(bridge, WebConfig(listen="127.0.0.1:8080")), base_url="http://127.0.0.1:8080")
            r = web.post(f"/api/devices/{n1}/ota", json={"action": "check"})
            assert r.status_code == 200 and r.json()["data"]["update_available"] is True, r.text
            assert web.post(f"/api/devices/{n1}/ota", json={"action": "check"},
                            headers={"Origin": "http://evil.example"}).status_code == 403
            r = web.post("/api/devices/nosuch/ota", json={"action": "check"})
            assert r.status_code == 404
            r = web.post(f"/api/devices/{n1}/ota", json={"action": "update", "manifest": "none.ota.json"})
            assert r.status_code == 400 and "not found in the OTA directory" in r.json()["detail"]
            farm.air.set_link(gw_mac, n1, loss=0.4)     # slow transfer: the restart lands in the middle
            r = web.post(f"/api/devices/{n1}/ota", json={"action": "schedule"})
            assert r.status_code == 200, r.text
            assert r.json()["data"]["state"]["state"] == "scheduled"
            assert r.json()["data"]["to"] == {"software_build_id": "gh-3"}
            job = web.get(f"/api/devices/{n1}/ota").json()
            assert job["job"]["mode"] == "schedule" and job["job"]["version"] == "gh-3"
            r = web.post(f"/api/devices/{n1}/ota", json={"action": "check"})
            assert r.status_code == 409 and "already in progress" in r.json()["detail"]
            wait_until(lambda: (bridge.ota.update_state(n1) or {}).get("progress", 0) > 10, 120, "transfer under way")
            bridge.stop()
            stopped = True
            jobs = list(Path(str(tmp_path / "b.db") + ".ota").glob("*.job.json"))
            assert [j.name for j in jobs] == [f"{n1}.job.json"]
            farm.air.set_link(gw_mac, n1, loss=0.0)
            restarted = Bridge(cfg, lambda: port).start()  # type: ignore[arg-type,return-value]
            assert restarted.ota.jobs.get(n1) is not None, "the rollout continues after the restart"
            wait_until(lambda: n1 not in restarted.ota.jobs, 180, "update done")
            assert restarted.ota.update_state(n1) == {"state": "idle", "installed_version": "gh-3",
                                                      "latest_version": "gh-3"}
            assert not jobs[0].exists()
            p = restarted.command_wait(n1, "status", {}, timeout=20, source="internal")
            assert p.result is not None and p.result["r"]["st"]["ota"]["versions"]["rules"] == "gh-3"
            # unschedule: a slow update of node 2 is cancelled, its state is back to available
            farm.air.set_link(gw_mac, n2, loss=0.7)
            web2 = TestClient(create_app(restarted, WebConfig(listen="127.0.0.1:8080")),
                              base_url="http://127.0.0.1:8080")
            page = web2.get(f"/node/{n1}").text         # the node page shows the update state
            assert f'id="upd-{n1}"' in page and "idle: installed gh-3, latest gh-3" in page
            assert web2.post(f"/api/devices/{n2}/ota", json={"action": "schedule"}).status_code == 200
            r = web2.post(f"/api/devices/{n2}/ota", json={"action": "unschedule"})
            assert r.status_code == 200, r.text
            assert r.json()["data"]["state"]["state"] == "available"
            assert n2 not in restarted.ota.jobs
            gw = restarted.client
            assert gw is not None
            st = gw.request("ota_state", timeout=10)["r"]
            assert n2 not in st["nodes"] or st["nodes"][n2]["state"] in ("cancelled", "failed"), st
            ups = [p["update"]["state"] for _, p in sub.json(lambda t: t == f"{ROOT_T}/{n1}/state")
                   if isinstance(p, dict) and "update" in p]
            assert "scheduled" in ups and "updating" in ups and ups[-1] == "idle", ups
        finally:
            if not stopped:
                bridge.stop()
            if restarted is not None:
                restarted.stop()
            sub.close()


def test_schedule_for_a_sleeping_node_runs_at_its_next_wake(tmp_path: Path, broker: Mosquitto) -> None:
    """A deep-sleeping node (``sleep_ms``): ``schedule`` is answered at once with the node ``scheduled``;
    the gateway's mailbox hands the update over when the node next wakes, which stays awake for it; the
    node ends ``idle`` with the new version."""
    kp, ota = rules_package(tmp_path, "gh-4", 4, "gh4")
    work = tmp_path / "farm"
    (work / "node1").mkdir(parents=True)
    (work / "node1" / "owner_keys.json").write_bytes(owner_keys_document([kp.public]))
    n1 = mac_hex(node_mac(1))
    sub = Subscriber(broker.port, ["fieldlink/#"])
    with Farm(nodes=1, workdir=work, seed=9, node_options={"telemetry_batch": 1, "sleep_ms": 4000}) as farm:
        farm.disconnect()
        port = farm.port
        assert port is not None
        cfg = BridgeConfig(db=str(tmp_path / "b.db"), bridge_id="ota3", mqtt=MqttConfig(url=broker.url),
                           ota_dir=str(ota), ota_key=str(kp.public), cmd_timeout_s=15.0,
                           ota_confirm_timeout_s=60.0, ota_timeout_s=180.0)
        bridge = Bridge(cfg, lambda: port).start()  # type: ignore[arg-type,return-value]
        try:
            wait_until(lambda: n1 in bridge.devices and (bridge.devices[n1].get("sl") or 0) > 0, 90,
                       "the sleeping node known")
            r = ask(sub, "schedule", {"id": n1}, "s1", timeout=120)
            assert r["status"] == "ok", r
            assert r["data"]["state"]["state"] == "scheduled" and r["data"]["to"] == {"software_build_id": "gh-4"}
            wait_until(lambda: n1 not in bridge.ota.jobs, 180, "the scheduled update done")
            assert bridge.ota.update_state(n1) == {"state": "idle", "installed_version": "gh-4",
                                                   "latest_version": "gh-4"}, states(sub, n1)
            seen = [u["state"] for u in states(sub, n1)]
            assert "scheduled" in seen and "updating" in seen, seen
            assert any(e[0] == "sleep" for e in farm.boards[0].events), farm.boards[0].events[-10:]
        finally:
            bridge.stop()
            sub.close()
