# Rules end to end inside a node: fieldlink.node.role.Node samples a temperature sensor, runs the RuleEngine
# every tick and drives a real fieldlink.relays.Relays (fake pins). The rule (hand-assembled, see
# test_rules_vm.hot_program): fan on when sht.temperature > 28 with hysteresis 1.5, off below 26.5,
# cooldown 10 s. The sensor is a scripted stand-in returning the SensorManager reading format; the same
# scenario through the sim's fake SHT4x chip and the real driver is in test_rules_e2e_chip.py.
import json

from devtest import tmpdir
from test_node_support import NODE_CFG, Clock, FakeAir, FakeLink, PinBank, run
from test_rules_vm import hot_program

from fieldlink.runtime.state import State
from fieldlink.node.role import Node
from fieldlink.relays import Relays
from fieldlink.rules.engine import RuleEngine


class ScriptedSht:
    """SensorManager stand-in: one sensor "sht" due every tick, temperature set by the test."""

    def __init__(self):
        self.temp = 20.0

    def due(self, now):
        return ["sht"]

    def start(self, name, now):
        return 0

    def collect(self, name, now):
        return {"temperature": self.temp, "relative_humidity": 40.0, "valid": True, "error": None}

    def read(self, name, now):
        return self.collect(name, now)


def _node():
    cfg = json.loads(json.dumps(NODE_CFG))
    cfg["sensors"] = [{"name": "sht", "driver": "sht4x", "interval_ms": 1000}]
    clk = Clock(0)
    link = FakeLink(FakeAir(), b"\x02\x00\x00\x00\x00\x21")
    pins = PinBank()
    relays = Relays(cfg, clock=clk, pin_factory=pins)
    d = tmpdir("e2e")
    engine = RuleEngine(d + "/rules.bin")
    engine.load(hot_program(cooldown_ms=10000))
    node = Node(cfg, link, sensors=ScriptedSht(), relays=relays, state=State(d + "/state.json"),
                clock=clk, rules=engine)
    return node, clk, relays, engine


def test_rule_switches_relay_with_hysteresis_and_cooldown():
    node, clk, relays, engine = _node()
    sensor = node.sensors
    seen = []

    async def at(t, temp):
        clk.t = t
        sensor.temp = temp
        await node.tick(t)
        seen.append((t, relays.state("fan")))

    async def main():
        await at(0, 25.0)
        assert relays.state("fan") is False
        await at(1000, 28.5)            # above 28: on
        assert relays.state("fan") is True
        await at(2000, 27.0)            # 27 > 26.5: hysteresis keeps it on
        assert relays.state("fan") is True
        await at(3000, 26.0)            # below 26.5: off
        assert relays.state("fan") is False
        await at(4000, 30.0)            # hot again, but the rule fired at 1000: cooldown until 11000
        assert relays.state("fan") is False
        await at(10999, 30.0)
        assert relays.state("fan") is False
        await at(11000, 30.0)
        assert relays.state("fan") is True

    run(main())
    assert node.counters["rules_errors"] == 0
    assert node.counters["actions"] == 3
    assert engine.info()["loaded"] is True
