# Rules end to end on the virtual board, with nothing stubbed between the sensor and the relay: the sim's
# fake SHT4x (device/sim/chips.py: real command bytes, CRC-8 on every word) on machine.I2C(0), the real
# SensorManager + SHT4x driver, fieldlink.node.role.Node running the RuleEngine every tick, and real Relays
# on the sim's machine.Pin. Rule (test_rules_vm.hot_program): fan on above 28 degC, hysteresis 1.5
# (off below 26.5), cooldown 10 s.
import json

import chips
import machine
import simboard
from devtest import tmpdir
from test_node_support import NODE_CFG, Clock, FakeAir, FakeLink, run
from test_rules_vm import hot_program

from fieldlink.runtime.state import State
from fieldlink.node.role import Node
from fieldlink.relays import Relays
from fieldlink.rules.engine import RuleEngine
from fieldlink.node.sensors import SensorManager


def _setup():
    simboard.reset()
    cfg = json.loads(json.dumps(NODE_CFG))
    cfg["i2c"] = [{"id": 0, "scl": 9, "sda": 8, "freq": 400000}]
    cfg["sensors"] = [{"name": "sht", "driver": "sht4x", "bus": "i2c0", "address": 0x44, "interval_ms": 1000}]
    cfg["relays"] = [{"name": "fan", "pin": 5, "active": "low", "restore": "off"}]
    sht = chips.SHT4x(temperature=25.0, humidity=50.0, timing=False)
    simboard.attach_i2c(0, 0x44, sht)
    clk = Clock(0)
    d = tmpdir("e2echip")
    engine = RuleEngine(d + "/rules.bin")
    engine.load(hot_program(cooldown_ms=10000))
    relays = Relays(cfg, clock=clk)  # default pin factory: the sim's machine.Pin
    sensors = SensorManager(cfg, clock=clk, sleep_ms=lambda ms: None)
    node = Node(cfg, FakeLink(FakeAir(), b"\x02\x00\x00\x00\x00\x22"), sensors=sensors, relays=relays,
                state=State(d + "/state.json"), clock=clk, rules=engine)
    return node, clk, sht, relays


def _fan_pin_level():
    # active-low relay: pin 0 = on
    return machine.Pin(5).value()


def test_fake_sht4x_crossing_threshold_switches_relay_with_hysteresis_and_cooldown():
    node, clk, sht, relays = _setup()
    log = []

    async def at(t, temp):
        clk.t = t
        sht.temperature = temp
        readings = await node.tick(t)
        log.append((t, temp, readings.get("sht"), relays.state("fan")))

    async def main():
        await at(0, 25.0)
        assert relays.state("fan") is False and _fan_pin_level() == 1
        await at(1000, 28.6)          # the chip's 16-bit raw value decodes to ~28.6: above 28 -> on
        assert relays.state("fan") is True and _fan_pin_level() == 0
        await at(2000, 27.0)          # hysteresis keeps it on above 26.5
        assert relays.state("fan") is True
        await at(3000, 26.0)          # below 26.5 -> off
        assert relays.state("fan") is False and _fan_pin_level() == 1
        await at(4000, 31.0)          # hot again, cooldown since the first firing at 1000 -> stays off
        assert relays.state("fan") is False
        await at(11000, 31.0)         # cooldown over -> on
        assert relays.state("fan") is True

    run(main())
    # the readings went through the driver: the temperature decoded from the chip's raw word
    t = log[1][2]["temperature"]
    assert abs(t - 28.6) < 0.01, log[1]
    assert node.counters["rules_errors"] == 0
    simboard.reset()


def test_crc_errors_on_the_bus_do_not_switch_the_relay():
    node, clk, sht, relays = _setup()

    async def main():
        clk.t = 0
        sht.temperature = 35.0
        sht.fail("crc")               # every word's CRC is wrong: readings invalid, rule sees no value
        await node.tick(0)
        assert relays.state("fan") is False
        assert node.sensors.errors("sht")["crc"] >= 1
        sht.fail(None)
        clk.t = 1000
        await node.tick(1000)
        assert relays.state("fan") is True

    run(main())
    simboard.reset()
