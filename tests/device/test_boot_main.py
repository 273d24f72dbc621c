# Booting a deployed slot: fieldlink.main finds the slot's board.json (sys.path[0] = fl/a, as the boot.py
# loader leaves it), keeps its state in the store outside the slots, and builds the node's RuleEngine from
# the program hot-swapped into the store or else the slot's bundled rules/*.bin. A corrupt bundled program
# is reported and the node runs without rules; rules_load over the link reaches the engine, persists the
# program in the store, and that program wins over the bundled one at the next boot.
# Programs are assembled by hand (test_rules_vm.hot_program: fan on above 28 degC, hysteresis 1.5).
import json
import os
import sys

from devtest import tmpdir
from test_node_support import NODE_CFG, Clock, FakeAir, FakeLink, PinBank, run
from test_rules_e2e import ScriptedSht
from test_rules_vm import hot_program

from fieldlink.runtime import config
from fieldlink import main
from fieldlink.link.radio import radio
from fieldlink.node import start as node_start
from fieldlink.runtime import store as st
from fieldlink.link.core import T_COMMAND
from fieldlink.node.role import Node
from fieldlink.relays import Relays

GW = b"\x02\x00\x00\x00\x00\x01"
N1 = b"\x02\x00\x00\x00\x00\x21"
HOT = hot_program()
HOT_COOL = hot_program(cooldown_ms=10000)  # a different valid program (other bytes, same inputs)


def _corrupt(blob):
    b = bytearray(blob)
    b[40] ^= 0xFF  # inside the body: the CRC-32 no longer matches
    return bytes(b)


def _cfg():
    cfg = json.loads(json.dumps(NODE_CFG))
    cfg["name"] = "boot-node"
    cfg["sensors"] = [{"name": "sht", "driver": "synthetic", "interval_ms": 1000, "seed": 5}]
    return cfg


def _exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def _write(path, data):
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _board(tag, rules=None, cfg=None):
    """A board filesystem: fl/a holds board.json and rules/<name> for each (name, bytes) in rules."""
    root = tmpdir(tag)
    slot = root + "/fl/a"
    for d in (root + "/fl", slot, slot + "/rules"):
        os.mkdir(d)
    _write(slot + "/board.json", json.dumps(cfg or _cfg()))
    for name, blob in rules or ():
        _write(slot + "/rules/" + name, blob)
    return root, slot, root + "/fl/data"


class InSlot:
    """sys.path[0] = slot while active, as after the loader ran."""

    def __init__(self, slot):
        self.slot = slot

    def __enter__(self):
        sys.path.insert(0, self.slot)
        return self

    def __exit__(self, *exc):
        sys.path.remove(self.slot)
        return False


def _setenv(name, value):
    if hasattr(os, "environ"):  # CPython: os.getenv reads os.environ
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    elif value is None:
        os.unsetenv(name)
    else:
        os.putenv(name, value)


def test_config_and_app_dir_come_from_the_active_slot():
    root, slot, store = _board("cfg")
    saved = os.getenv("FIELDLINK_BOARD")
    _setenv("FIELDLINK_BOARD", None)
    try:
        with InSlot(slot):
            assert main.slot_dir() == slot
            assert main.find_config() == slot + "/board.json"
            assert main.find_config("x/board.json") == "x/board.json"  # an explicit path wins
            _setenv("FIELDLINK_BOARD", "env/board.json")
            assert main.find_config() == "env/board.json"  # then the environment
            assert main.find_config("x/board.json") == "x/board.json"
            _setenv("FIELDLINK_BOARD", None)
            os.remove(slot + "/board.json")  # a slot without a config: the root's
            assert main.find_config() == ("board.json" if sys.platform in ("linux", "darwin") else "/board.json")
            _write(slot + "/board.json", "{}")
            assert main.find_config() == slot + "/board.json"
        # no slot on sys.path: board.json at the filesystem root (relative on the unix port)
        assert main.slot_dir() is None
        assert main.find_config() == ("board.json" if sys.platform in ("linux", "darwin") else "/board.json")
    finally:
        _setenv("FIELDLINK_BOARD", saved)
    with InSlot(slot):
        assert main.app_dir(slot + "/board.json") == slot
        # nothing may be written into an app slot: the last good copy goes to the store
        assert main.last_good_path(slot + "/board.json", store) == store + "/board.json.last"
    # no slot on sys.path: the app directory is the config's
    assert main.app_dir(root + "/board.json") == root
    assert main.last_good_path(root + "/board.json", store) == root + "/board.json.last"
    assert main.slot_dir(root + "/fl/b/") == root + "/fl/b" and main.slot_dir(root + "/fl/c") is None
    assert main.DEFAULT_STORE in ("fl/data", "/fl/data")


def test_main_helpers_build_a_node_with_the_bundled_program():
    # two bundled programs: the first by name is used, the other one is named as ignored
    _root, slot, store = _board("bundled", [("b_other.bin", HOT_COOL), ("a_hot.bin", HOT)])
    with InSlot(slot):
        path = main.find_config()
        st.makedirs(store)
        cfg = config.load(path, main.last_good_path(path, store))
        relays = main.make_relays(cfg, store)
        eng = node_start.make_rules(cfg, store, main.app_dir(path))
        node = node_start.build_node(cfg, store, relays, radio_parts=radio(cfg), rules=eng)
    assert cfg["name"] == "boot-node" and _exists(store + "/board.json.last")
    assert not _exists(slot + "/board.json.last")
    assert node.rules is eng and eng.path == store + "/rules.bin"
    assert eng.pending is not None and eng.pending.raw == HOT and eng.last_error is None
    assert not _exists(store + "/rules.bin")  # a bundled program is not persisted
    node.sensors = ScriptedSht()

    async def ticks():
        node.sensors.temp = 25.0
        await node.tick(1000)
        assert relays.state("fan") is False
        node.sensors.temp = 30.0
        await node.tick(2000)
    run(ticks())
    info = eng.info()
    assert info["loaded"] and info["rules"] == 1 and info["size"] == len(HOT)
    assert eng.get("sht.temperature") == 30.0
    assert relays.state("fan") is True and node.counters["actions"] == 1 and node.counters["rules_errors"] == 0


def test_persisted_program_wins_over_the_bundled_one():
    _root, slot, store = _board("persisted", [("hot.bin", HOT)])
    st.makedirs(store)
    _write(store + "/rules.bin", HOT_COOL)
    eng = node_start.make_rules(_cfg(), store, slot)
    assert eng.prog is not None and eng.prog.raw == HOT_COOL and eng.pending is None
    # a persisted program that no longer verifies is reported and the bundled one runs instead
    _write(store + "/rules.bin", _corrupt(HOT_COOL))
    eng = node_start.make_rules(_cfg(), store, slot)
    assert eng.prog is None and eng.pending.raw == HOT
    assert _read(store + "/rules.bin") == _corrupt(HOT_COOL)  # left for inspection, not overwritten


def test_corrupt_bundled_program_is_reported_and_the_node_runs():
    _root, slot, store = _board("corrupt", [("hot.bin", _corrupt(HOT))])
    st.makedirs(store)
    eng = node_start.make_rules(_cfg(), store, slot)
    assert eng is not None and eng.prog is None and eng.pending is None
    assert "bundled program" in eng.last_error and "hot.bin" in eng.last_error and "rejected" in eng.last_error
    # no bundled rules at all: an engine without a program (rules_load can install one later)
    _r2, slot2, store2 = _board("none")
    eng2 = node_start.make_rules(_cfg(), store2, slot2)
    assert eng2 is not None and eng2.prog is None and eng2.pending is None and eng2.last_error is None
    # the node runs with the program-less engine: ticks, no actions, no rules errors
    cfg = _cfg()
    clk = Clock(0)
    air = FakeAir()
    gw = FakeLink(air, GW, gateway=True)
    gw.running = True
    link = FakeLink(air, N1)
    link.running = True
    relays = Relays(cfg, clock=clk, pin_factory=PinBank())
    node = Node(cfg, link, sensors=ScriptedSht(), relays=relays, clock=clk, rules=eng)
    node.sensors.temp = 35.0

    async def ticks():
        for t in (0, 1000, 2000):
            clk.t = t
            assert "sht" in await node.tick(t)
        # the operator sees why there are no rules
        info = await gw.send(N1, T_COMMAND, {"op": "rules_info"})
        assert info["ok"] and info["loaded"] is False and info["pending"] is False
        assert info["error"].startswith("bundled program ") and len(info["error"]) <= 96
        node.rules = None
        assert (await gw.send(N1, T_COMMAND, {"op": "rules_info"}))["err"] == "no_rules_engine"
        node.rules = eng
    run(ticks())
    assert node.counters["rules_errors"] == 0 and node.counters["actions"] == 0
    assert relays.state("fan") is False and node.counters["samples"] == 3


def test_rules_load_command_hot_swaps_persists_and_wins_at_next_boot():
    _root, slot, store = _board("hotswap", [("hot.bin", HOT)])
    st.makedirs(store)
    cfg = _cfg()
    clk = Clock(0)
    air = FakeAir()
    gw = FakeLink(air, GW, gateway=True)
    gw.running = True
    link = FakeLink(air, N1)
    link.running = True
    relays = Relays(cfg, clock=clk, pin_factory=PinBank())
    eng = node_start.make_rules(cfg, store, slot)
    node = Node(cfg, link, sensors=ScriptedSht(), relays=relays, clock=clk, rules=eng)

    async def go():
        await node.tick(0)
        assert eng.prog.raw == HOT and eng.swaps == 1
        res = await gw.send(N1, T_COMMAND, {"op": "rules_load", "a": {"prog": HOT_COOL}})
        assert res == {"ok": True, "size": len(HOT_COOL)}
        assert _read(store + "/rules.bin") == HOT_COOL  # persisted in the store
        assert eng.prog.raw == HOT  # swapped at the next tick, not in the command handler
        clk.t = 1000
        await node.tick(1000)
        assert eng.prog.raw == HOT_COOL and eng.swaps == 2
        info = await gw.send(N1, T_COMMAND, {"op": "rules_info"})
        assert info == {"ok": True, "loaded": True, "pending": False, "swaps": 2, "rules": 1,
                        "size": len(HOT_COOL), "crc": eng.prog.crc}
        bad = await gw.send(N1, T_COMMAND, {"op": "rules_load", "a": {"prog": _corrupt(HOT)}})
        assert bad["ok"] is False and bad["err"] == "rejected" and "VerifyError" in bad["msg"]
        assert eng.prog.raw == HOT_COOL and _read(store + "/rules.bin") == HOT_COOL
        info = await gw.send(N1, T_COMMAND, {"op": "rules_info"})
        assert info["loaded"] and info["size"] == len(HOT_COOL) and info["error"] == eng.last_error[:96] != ""
        assert (await gw.send(N1, T_COMMAND, {"op": "rules_load", "a": {"prog": "text"}}))["err"] == "bad_args"
    run(go())
    # next boot: the hot-swapped program is restored from the store, not the bundled one
    again = node_start.make_rules(cfg, store, slot)
    assert again.prog.raw == HOT_COOL and again.pending is None


class TickThenStop:
    """Wraps the node main.run() built: runs a few ticks with a hot scripted sensor, then returns."""

    def __init__(self, node, seen):
        self.node = node
        self.seen = seen

    async def run(self):
        n = self.node
        n.sensors = ScriptedSht()
        n.sensors.temp = 31.0
        for t in (0, 1000):
            await n.tick(t)
        self.seen.append((n.cfg["name"], n.rules.info(), n.relays.state("fan")))


def test_run_boots_the_slot_node_with_its_bundled_rules():
    root, slot, store = _board("run", [("hot.bin", HOT)])
    seen = []
    real = node_start.build_node

    def build(cfg, store_, relays, wdt=None, radio_parts=None, rules=None):
        seen.append(store_)
        return TickThenStop(real(cfg, store_, relays, wdt, radio_parts, rules), seen)
    node_start.build_node = build
    wdt = main._wdt
    main._wdt = lambda cfg: None  # a virtual watchdog left running would end the test process ~30 s later
    try:
        with InSlot(slot):
            assert main.run(store=store, max_attempts=1) == 1
    finally:
        node_start.build_node = real
        main._wdt = wdt
    assert seen[0] == store
    name, info, fan = seen[1]
    assert name == "boot-node" and info["loaded"] and info["size"] == len(HOT) and fan is True
    assert _exists(store + "/board.json.last") and _exists(store + "/node_state.json")
    assert not _exists(slot + "/board.json.last") and not _exists(root + "/board.json.last")
    assert sorted(os.listdir(slot)) == ["board.json", "rules"]  # the slot is left exactly as deployed
