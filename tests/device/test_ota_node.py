# OTA in the running board: fieldlink.main's trial handling (crash -> rollback), the self-test
# supervisor (confirm, or roll back and reset), rules_load/make_rules refusing unsigned programs once an
# owner key is installed, the first-boot trust bootstrap and the node's status field. CPython and MicroPython.
import json
import sys

import asyncio

from devtest import raises, tmpdir
from otakit import BOARD, Key, app_files, app_update, board_root, hx, manifest, read, send
from test_node_support import NODE_CFG

from fieldlink import main
from fieldlink.node import commands
from fieldlink.node import start as node_start
from fieldlink.ota import bootsel, fsio
from fieldlink.ota.hook import OtaHook, root_of
from fieldlink.ota.state import OWNER_KEYS, State
from fieldlink.ota.updater import Updater

OWNER = Key(b"\x05" * 32)


def _on_trial(tag):
    """A board whose app update (slot b) was installed and booted once by the loader."""
    root, store = board_root(tag, keys=[OWNER])
    m, sig, stream = app_update(OWNER, app_files(b"t"), 2, "2.0")
    up = Updater(store, root, board=BOARD, mpy=None)
    s = up.begin(m, sig)
    send(s, stream, 500)
    s.finish()
    assert bootsel.select(root) == "b"
    return root, store


class Link:
    def __init__(self, paired):
        self.paired = paired


class Role:
    def __init__(self, paired=True, sensors_ok=True):
        self.link = Link(paired)
        self.rules = None
        self.events = []
        self.sensors_ok = sensors_ok

    def self_test(self):
        return {"ok": self.sensors_ok, "sensors": {"sht": self.sensors_ok}, "link": True}

    def emit(self, ev, sev="info", data=None):
        self.events.append((ev, sev, data))


def _run(coro):
    return asyncio.run(coro)


def test_root_of_slot_paths():
    assert root_of("/fl/b") == "/" and root_of("fl/a") == "." and root_of("/tmp/x/fl/a") == "/tmp/x"
    assert root_of("/lib") is None and root_of(None) is None


def test_supervisor_confirms_when_the_self_test_passes():
    root, store = _on_trial("sup_ok")
    hook = OtaHook(store, root + "/fl/b", BOARD, settle_ms=0)
    assert hook.boot()["trial"]["version"] == "2.0" and hook.on_trial()
    role = Role()
    resets = []
    assert _run(hook.supervise(role, lambda: resets.append(1), poll_ms=10)) is True
    assert resets == [] and role.events[0][0] == "ota_confirmed"
    assert read(root + "/fl/active") == "b" and State(store).d["counters"]["app"] == 2
    assert hook.status()["versions"]["app"] == "2.0"


def test_supervisor_rolls_back_and_resets_without_a_gateway():
    root, store = _on_trial("sup_link")
    hook = OtaHook(store, root + "/fl/b", BOARD, timeout_ms=50, settle_ms=0)
    hook.boot()
    role = Role(paired=False)
    resets = []
    assert _run(hook.supervise(role, lambda: resets.append(1), poll_ms=10)) is False
    assert resets == [1]
    ev = [e for e in role.events if e[0] == "ota_rollback"][0]
    assert ev[2]["reason"] == "link" and ev[2]["version"] == "2.0"
    assert bootsel.select(root) == "a"
    assert State(store).d["last_rollback"]["reason"] == "link"
    # a failing sensor is a failed self-test too
    root, store = _on_trial("sup_sensor")
    hook = OtaHook(store, root + "/fl/b", BOARD, timeout_ms=30, settle_ms=5)
    hook.boot()
    assert _run(hook.supervise(Role(sensors_ok=False), None, poll_ms=10)) is False
    assert State(store).d["last_rollback"]["reason"] == "sensor sht"


def test_rollback_is_reported_as_an_event_on_the_next_boot():
    root, store = _on_trial("report")
    assert bootsel.crashed(root)
    bootsel.select(root)
    hook = OtaHook(store, root + "/fl/a", BOARD)
    assert hook.boot()["rolled_back"] == "crash"
    assert hook.pending() and not hook.on_trial()  # main starts the supervisor for the report
    role = Role()
    assert _run(hook.supervise(role)) is None
    assert role.events == [("ota_rollback", "warning", {"kind": "app", "version": "2.0", "reason": "crash"})]


class DyingRole:
    async def run(self):
        raise RuntimeError("new app blew up")


def test_main_rolls_back_a_role_that_dies_on_its_trial_boot():
    root, store = _on_trial("mainc")
    path = root + "/fl/b/board.json"
    with open(path, "w") as f:
        f.write(json.dumps(NODE_CFG))
    resets = []
    saved = (main._reset, node_start.build_node, main._sleep_s, main.make_relays, main._wdt)
    main._wdt = lambda cfg: None  # no virtual watchdog left running after the test
    main._reset = lambda: resets.append(1)
    main._sleep_s = lambda s, wdt=None: None
    main.make_relays = lambda cfg, store, restore=True: None
    node_start.build_node = lambda cfg, store, relays, wdt=None, radio_parts=None, rules=None: DyingRole()
    sys.path.insert(0, root + "/fl/b")  # what the boot.py loader does
    try:
        main.run(path, store=store, retry_s=0, max_attempts=1)
    finally:
        sys.path.pop(0)
        main._reset, node_start.build_node, main._sleep_s, main.make_relays, main._wdt = saved
    assert resets == [1]
    assert read(root + "/fl/trial") is None and read(root + "/fl/rollback") == "crash"
    assert bootsel.select(root) == "a"


def _rules_prog():
    from test_rules_verify import prog
    return prog()


class RulesNode:
    def __init__(self, store, hook):
        from fieldlink.rules.engine import RuleEngine
        self.rules = RuleEngine(path=store + "/rules.bin", restore=False)
        self.ota = hook

    def count(self, name, n=1):
        pass


def test_rules_load_refuses_unsigned_programs_once_an_owner_key_is_installed():
    p = _rules_prog()
    root, store = board_root("rl", keys=[OWNER])
    hook = OtaHook(store, None, BOARD)
    node = RulesNode(store, hook)
    r = commands.handle(node, {"op": "rules_load", "a": {"prog": p}})
    assert r["ok"] is False and r["err"] == "unsigned"
    assert node.rules.pending is None and read(store + "/rules.bin") is None
    m, sig = manifest(OWNER, "rules", p, 3, "r3")
    r = commands.handle(node, {"op": "rules_load", "a": {"prog": p, "m": m, "sig": sig}})
    assert r["ok"] is True, r
    assert node.rules.pending is not None and fsio.read(store + "/rules.bin") == p
    # restored at the next boot because its signed envelope was stored with it
    assert node_start.persisted_rules_refusal({"name": BOARD}, store) is None
    eng = node_start.make_rules({"name": BOARD}, store, None)
    assert eng.prog is not None and eng.prog.raw == p
    # a persisted program without its envelope (written before the key, or by hand) is not run
    fsio.remove(store + "/rules.bin.ota")
    assert "unsigned" in node_start.persisted_rules_refusal({"name": BOARD}, store)
    eng = node_start.make_rules({"name": BOARD}, store, None)
    assert eng.prog is None
    assert fsio.read(store + "/rules.bin") == p  # refused, not destroyed
    # without an owner key nothing changes: unsigned programs load as before
    root2, store2 = board_root("rl2")
    node2 = RulesNode(store2, OtaHook(store2, None, BOARD))
    assert commands.handle(node2, {"op": "rules_load", "a": {"prog": p}})["ok"] is True


def test_first_boot_trusts_the_bundle_owner_key_once():
    root, store = board_root("boot")
    slot = root + "/fl/a"
    doc = json.dumps({"fieldlink_keys": 1, "keys": [hx(OWNER.pub)]})
    with open(slot + "/" + OWNER_KEYS, "w") as f:
        f.write(doc)
    hook = OtaHook(store, slot, BOARD)
    hook.boot()
    assert hook.status()["keys"] == [OWNER.kid]
    other = Key(b"\x06" * 32)
    with open(slot + "/" + OWNER_KEYS, "w") as f:
        f.write(json.dumps({"fieldlink_keys": 1, "keys": [hx(other.pub)]}))
    OtaHook(store, slot, BOARD).boot()  # an installed trust store is never replaced by a bundle
    assert sorted(State(store).d["keys"]) == [OWNER.kid]
    raises(ValueError, __import__("fieldlink.ota.state", None, None, ["x"]).parse_owner_keys, b'{"keys": []}')


def test_node_status_reports_ota_and_a_real_node_passes_the_self_test():
    from test_node import Rig
    root, store = _on_trial("realnode")
    r = Rig()
    hook = OtaHook(store, root + "/fl/b", BOARD, settle_ms=0, timeout_ms=5000)
    hook.boot()
    r.node.ota = hook
    st = r.node.status()
    assert st["ota"]["trial"] == {"kind": "app", "version": "2.0"} and st["ota"]["keys"] == [OWNER.kid]
    ok, reason = hook.self_test(r.node)
    assert ok, reason
    assert _run(hook.supervise(r.node, None, poll_ms=10)) is True
    assert r.node.status()["ota"]["counters"] == {"app": 2}
    assert [e["ev"] for e in r.node.events] == ["ota_confirmed"]


def test_a_sensor_warming_up_passes_the_self_test_a_failing_one_does_not():
    from test_node import Rig
    r = Rig()
    hook = OtaHook(tmpdir("warm") + "/fl/data", None, BOARD)
    real = r.node.sensors.read
    for err, ok in (("not_ready", True), ("io", False), ("crc", False)):
        def read(name, now=None, err=err):
            v = real(name, now)
            v["valid"] = False
            v["error"] = err
            return v
        r.node.sensors.read = read
        st = r.node.self_test()
        assert st["ok"] is ok, (err, st)
        good, reason = hook.self_test(r.node)
        assert good is ok and (ok or reason.startswith("sensor ")), (err, reason)


def _write_manifest(slot, version):
    with open(slot + "/manifest.json", "w") as f:
        f.write(json.dumps({"format": "fieldlink-bundle/1", "board": BOARD, "version": version, "files": []}))


def test_heartbeat_reports_the_installed_app_version_only_from_a_slot():
    from test_node import Rig, run
    from fieldlink.link.core import T_HEARTBEAT

    async def hb(r):
        assert await r.node.send_heartbeat()
        return r.got[T_HEARTBEAT][-1]

    async def main():
        # run from source: no hook, or a hook without an app slot -> no "app"
        r = Rig()
        assert "app" not in await hb(r)
        src = tmpdir("src")
        r.node.ota = OtaHook(src + "/fl/data", None, BOARD, app=src)
        assert r.node.ota.boot() is None
        h = await hb(r)
        assert "app" not in h and h["fw"] == __import__("fieldlink").VERSION
        # an app slot and no OTA update yet: the slot's bundle manifest version
        root, store = board_root("hbslot", keys=[OWNER])
        _write_manifest(root + "/fl/a", "1.5")
        r = Rig()
        r.node.ota = OtaHook(store, root + "/fl/a", BOARD)
        r.node.ota.boot()
        assert (await hb(r))["app"] == "1.5"
        # a slot whose manifest is missing: nothing (never a guess)
        root2, store2 = board_root("hbnoman")
        r2 = Rig()
        r2.node.ota = OtaHook(store2, root2 + "/fl/a", BOARD)
        assert "app" not in await hb(r2)
        # an app update on trial: still the version it came from; the new one once confirmed
        root, store = _on_trial("hbtrial")
        _write_manifest(root + "/fl/a", "1.5")
        r = Rig()
        hook = OtaHook(store, root + "/fl/b", BOARD, settle_ms=0, timeout_ms=5000)
        assert hook.boot()["trial"]["version"] == "2.0"
        r.node.ota = hook
        assert (await hb(r))["app"] == "1.5"
        assert await hook.supervise(r.node, None, poll_ms=10) is True
        assert (await hb(r))["app"] == "2.0"
        # the confirmed version wins over the slot's manifest (which says 1.0 here), also after a reboot
        _write_manifest(root + "/fl/b", "1.0")
        r = Rig()
        r.node.ota = OtaHook(store, root + "/fl/b", BOARD)
        r.node.ota.boot()
        assert (await hb(r))["app"] == "2.0"
        # a long version string is cut to 31 characters (one msgpack fixstr: the heartbeat budget)
        root, store = board_root("hblong")
        _write_manifest(root + "/fl/a", "v" * 40)
        r = Rig()
        r.node.ota = OtaHook(store, root + "/fl/a", BOARD)
        assert (await hb(r))["app"] == "v" * 31
        # worst case (docs/protocol.md): two relays, a sleep period, counters near 1000, a 32-character
        # board name, a float battery and that app version still fit one authenticated frame
        from fieldlink.codec import mpack
        from fieldlink.link.frame import HDR, MAX_FRAME, TAG_LEN
        m = r.node.build_heartbeat()
        m.update({"up": 4000000000, "boot": 65535, "relays": {"pump": True, "fan": False}, "sl": 3600000,
                  "bd": "x" * 32, "bat": 87.5})
        for k in m["c"]:
            m["c"][k] = 999
        n = len(mpack.packb(m))
        assert m["app"] == "v" * 31 and n <= MAX_FRAME - HDR - TAG_LEN, n
    run(main())
