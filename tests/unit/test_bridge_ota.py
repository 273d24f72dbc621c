"""OTA through the bridge without a gateway (bridge/ota.py): which package a check offers (board, kind,
anti-downgrade counter, installed version), refused packages (wrong key, tampered, outside the OTA
directory), the update state in the node's state payload, the Home Assistant update entity rendered the
way Home Assistant renders it, and the settings from the config file/environment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fieldlink_host.bridge.config import BridgeConfig, load_config
from fieldlink_host.bridge.core import Bridge
from fieldlink_host.bridge.ota import OtaRequestError
from fieldlink_host.errors import FieldlinkError
from fieldlink_host.keys import new_keypair
from fieldlink_host.ota.package import make_package
from fieldlink_host.signing import encode_manifest
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = Path(__file__).resolve().parents[2]
N1 = "020000000011"


def rules_prog() -> bytes:
    from fieldlink_host.rules.compiler import compile_file
    return compile_file(ROOT / "tests" / "fixtures" / "rules" / "greenhouse.rules.yaml", "sim-node").program


@pytest.fixture
def setup(tmp_path: Path) -> Any:
    kp = new_keypair(tmp_path / "keys")
    ota = tmp_path / "ota"
    ota.mkdir()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "p.bin").write_bytes(rules_prog())
    for ver, counter in (("r5", 5), ("r6", 6)):
        make_package(tmp_path / "src" / "p.bin", kp.private, kind="rules", board="sim-node", version=ver,
                     counter=counter, out=ota / ver)
    make_package(tmp_path / "src" / "p.bin", kp.private, kind="rules", board="other-board", version="x9",
                 counter=9, out=ota / "other")
    cfg = BridgeConfig(db=str(tmp_path / "b.db"), bridge_id="u", ota_dir=str(ota), ota_key=str(kp.public))
    b = Bridge(cfg)
    b.devices[N1] = {"mac": N1, "name": "gh", "sensors": {}, "relays": {}, "fw": "0.1.0"}
    info: dict[str, Any] = {"board": "sim-node", "fw": "0.1.0", "versions": {}, "counters": {}}
    b.ota.node_info = lambda mac: info  # type: ignore[method-assign]
    yield b, info, ota, kp, tmp_path
    b.store.close()


def test_check_offers_the_newest_upgrade_for_the_board(setup: Any) -> None:
    b, info, _, _, _ = setup
    sel = b.ota.check(N1, {})
    assert (sel.kind, sel.package.name, sel.available) == ("rules", "r6.ota.json", True)
    assert (sel.installed_version, sel.latest_version) == (None, "r6")
    assert b.devices[N1]["update"] == {"state": "available", "installed_version": None, "latest_version": "r6"}
    assert b._state_payload(N1, b.devices[N1])["update"]["state"] == "available"
    info["versions"], info["counters"] = {"rules": "r6"}, {"rules": 6}
    sel = b.ota.check(N1, {})
    assert not sel.available and sel.installed_version == sel.latest_version == "r6"
    assert b.devices[N1]["update"]["state"] == "idle"
    # the same counter is a replay for the device, whatever the version string: not offered
    info["versions"], info["counters"] = {"rules": "r6-local"}, {"rules": 6}
    assert not b.ota.check(N1, {}).available
    # a higher installed counter (anti-downgrade): nothing is offered even with another version string
    info["versions"], info["counters"] = {"rules": "r7"}, {"rules": 7}
    assert not b.ota.check(N1, {}).available
    # the installed counter is lower but the same version string is installed: no update either
    info["versions"], info["counters"] = {"rules": "r6"}, {"rules": 1}
    assert not b.ota.check(N1, {}).available
    # a named package of an older counter than the newest is still an upgrade over what is installed
    info["versions"], info["counters"] = {"rules": "r4"}, {"rules": 4}
    sel = b.ota.check(N1, {"manifest": "r5.ota.json"})
    assert sel.available and sel.latest_version == "r5"


def test_check_refuses_bad_requests_and_packages(setup: Any) -> None:
    b, info, ota, kp, tmp = setup
    with pytest.raises(OtaRequestError, match="is for board other-board"):
        b.ota.check(N1, {"manifest": "other.ota.json"})
    with pytest.raises(OtaRequestError, match="outside the OTA directory"):
        b.ota.check(N1, {"manifest": "../src/p.ota.json"})
    with pytest.raises(OtaRequestError, match="must name a .ota.json"):
        b.ota.check(N1, {"manifest": "r6.ota.sig"})
    with pytest.raises(OtaRequestError, match="no valid OTA package for board sim-node kind app"):
        b.ota.check(N1, {"kind": "app"})
    # tampered: a flipped payload byte, a changed manifest field, a foreign key
    m = json.loads((ota / "r6.ota.json").read_bytes())
    m["counter"] = 60
    (ota / "r6.ota.json").write_bytes(encode_manifest(m))
    with pytest.raises(OtaRequestError, match="bad signature"):
        b.ota.check(N1, {"manifest": "r6.ota.json"})
    sel = b.ota.check(N1, {})                         # the scan skips it and offers the good r5
    assert sel.latest_version == "r5" and any("r6.ota.json: bad signature" in s for s in sel.skipped)
    stream = bytearray((ota / "r5.ota.bin").read_bytes())
    stream[3] ^= 1
    (ota / "r5.ota.bin").write_bytes(bytes(stream))
    with pytest.raises(OtaRequestError, match=r"no valid OTA package for board sim-node in .*\(refused r5.ota.json: payload does not match"):
        b.ota.check(N1, {})
    other = new_keypair(tmp / "other-keys")
    make_package(tmp / "src" / "p.bin", other.private, kind="rules", board="sim-node", version="z1", counter=70,
                 out=ota / "z1")
    with pytest.raises(OtaRequestError, match="not a configured ota_key"):
        b.ota.check(N1, {"manifest": "z1.ota.json"})
    info["board"] = None
    with pytest.raises(OtaRequestError, match="does not report its board"):
        b.ota.check(N1, {})
    shutil.rmtree(ota)
    info["board"] = "sim-node"
    with pytest.raises(OtaRequestError, match="does not exist"):
        b.ota.check(N1, {})


def test_run_request_errors_are_z2m_messages(setup: Any) -> None:
    b, info, _, _, _ = setup
    with pytest.raises(OtaRequestError, match="Device 'nope' does not exist"):
        b.ota.run_request("check", {"id": "nope"})
    info["versions"], info["counters"] = {"rules": "r6"}, {"rules": 6}
    with pytest.raises(OtaRequestError, match=r"Update of 'gh' failed \(No image currently available"):
        b.ota.run_request("update", {"id": "gh"})
    with pytest.raises(OtaRequestError, match="no update scheduled for 'gh'"):
        b.ota.run_request("unschedule", {"id": N1})
    data = b.ota.run_request("check", {"id": "gh"})
    assert data is not None and data["update_available"] is False and data["id"] == "gh"


def test_update_entity_renders_like_home_assistant(setup: Any) -> None:
    b, _, _, _, _ = setup
    topic, cfg = b.topics.update_discovery(N1, b.devices[N1])
    assert topic == f"homeassistant/update/fieldlink_{N1}/firmware/config"
    env = ImmutableSandboxedEnvironment()
    env.filters["to_json"] = json.dumps
    for upd, want in (
            ({"state": "updating", "progress": 42.5, "remaining": 12, "installed_version": "r5",
              "latest_version": "r6"}, (True, 42.5, "r5", "r6")),
            ({"state": "idle", "installed_version": "r6", "latest_version": "r6"}, (False, None, "r6", "r6")),
            ({"state": "available", "installed_version": None, "latest_version": "r6"}, (False, None, None, "r6"))):
        out = json.loads(env.from_string(cfg["value_template"]).render(value_json={"rssi": -50, "update": upd}))
        assert (out["in_progress"], out["update_percentage"], out["installed_version"], out["latest_version"]) == want
    # the default state of a node never checked: its app version on both sides, idle
    assert b._state_payload(N1, b.devices[N1])["update"] == {"state": "idle", "installed_version": "0.1.0",
                                                              "latest_version": "0.1.0"}


def test_config_file_and_environment(tmp_path: Path) -> None:
    f = tmp_path / "b.toml"
    f.write_text('db = "x.db"\nota_dir = "/srv/ota"\nota_confirm_timeout_s = 90\n')
    cfg = load_config(f, env={"FIELDLINK_BRIDGE_OTA_KEY": "/etc/fieldlink/owner.pub"})
    assert (cfg.ota_dir, cfg.ota_key, cfg.ota_confirm_timeout_s) == ("/srv/ota", "/etc/fieldlink/owner.pub", 90.0)
    cfg = load_config(None, env={}, ota_dir="o")
    assert cfg.ota_dir == "o" and cfg.ota_key is None


def test_start_resets_an_update_left_without_its_job(setup: Any) -> None:
    b, _, _, _, tmp = setup
    b.devices[N1]["update"] = {"state": "updating", "progress": 40.0, "remaining": 9, "installed_version": "r5",
                               "latest_version": "r6"}
    sd = Path(str(tmp / "b.db") + ".ota")
    sd.mkdir()
    (sd / f"{N1}.job.json").write_text("{not json")     # a job file that cannot be continued
    b.ota.start()
    assert not (sd / f"{N1}.job.json").exists() and N1 not in b.ota.jobs
    assert b.devices[N1]["update"] == {"state": "available", "installed_version": "r5", "latest_version": "r6"}
    assert b.store.devices()[N1]["update"]["state"] == "available"      # stored, survives the next restart


def test_ota_dir_that_is_not_a_directory_is_refused_at_start(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    for bad in (tmp_path / "file", tmp_path / "missing"):
        cfg = BridgeConfig(db=str(tmp_path / "b.db"), bridge_id="u", ota_dir=str(bad))
        with pytest.raises(FieldlinkError, match="ota_dir is not a directory") as ei:
            Bridge(cfg)
        assert ei.value.where == str(bad)
