# fieldlink.main.run(): config errors never crash and keep relays off, a dying role is restarted with its
# relays switched off. The radio/role builders are replaced by fakes; everything else is the real code.
import json

from devtest import tmpdir

from test_node_support import NODE_CFG, PinBank

from fieldlink import main
from fieldlink.node import start as node_start
from fieldlink.relays import Relays


class Recorder:
    def __init__(self):
        self.made = []
        self.pins = PinBank()

    def make_relays(self, cfg, store, restore=True):
        r = Relays(cfg, restore=restore, pin_factory=self.pins)
        self.made.append((cfg["name"], restore, r))
        return r


def _patched(rec, build_node=None):
    saved = (main.make_relays, node_start.build_node, main._sleep_s, main._wdt)
    main.make_relays = rec.make_relays
    main._wdt = lambda cfg: None  # a virtual watchdog left running would end the test process later
    main._sleep_s = lambda s, wdt=None: None
    if build_node is not None:
        node_start.build_node = build_node
    return saved


def _restore(saved):
    main.make_relays, node_start.build_node, main._sleep_s, main._wdt = saved


def test_main_missing_or_corrupt_config_retries_and_holds_relays_off():
    d = tmpdir("main")
    path = d + "/board.json"
    rec = Recorder()
    saved = _patched(rec)
    try:
        assert main.run(path, store=d + "/fl", retry_s=0, max_attempts=2) == 2  # missing: no crash
        assert rec.made == []  # nothing known about relays yet
        with open(path + ".last", "w") as f:
            f.write(json.dumps(NODE_CFG))  # a previous good config
        with open(path, "w") as f:
            f.write('{"name": "x", "role": ')  # corrupt now
        assert main.run(path, store=d + "/fl", retry_s=0, max_attempts=3) == 3
        assert [(n, r) for n, r, _ in rec.made] == [("t-node", False)] * 3
        # fan is active high, pump active low: both at their OFF level
        assert rec.pins.pins[1].v == 0 and rec.pins.pins[2].v == 1
    finally:
        _restore(saved)


class DyingRole:
    def __init__(self, relays, log):
        self.relays = relays
        self.log = log

    async def run(self):
        self.relays.set("fan", True)
        self.log.append(self.relays.state("fan"))
        raise RuntimeError("role blew up")


def test_main_restarts_a_dying_role_with_relays_off():
    d = tmpdir("main2")
    path = d + "/board.json"
    with open(path, "w") as f:
        f.write(json.dumps(NODE_CFG))
    rec = Recorder()
    seen = []
    saved = _patched(rec, lambda cfg, store, relays, wdt=None, radio_parts=None, rules=None: DyingRole(relays, seen))
    try:
        assert main.run(path, store=d + "/fl", retry_s=0, max_attempts=2) == 2
        assert seen == [True, True]  # the role ran twice
        for _, restore, r in rec.made:
            assert restore and r.state("fan") is False  # switched off after each failure
        assert rec.pins.pins[1].v == 0
    finally:
        _restore(saved)
