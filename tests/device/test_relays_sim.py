# Relays on the virtual board's machine.Pin (default pin factory): the boot safe state seen on the wire.
import simboard

from fieldlink.relays import Relays

# the relays of boards/sim-node.toml
SIM_NODE = {"pins": {"status_led": 48, "button": 0}, "relays": [
    {"name": "fan", "pin": 1, "active": "high", "restore": "off", "max_on_s": 3600, "min_switch_ms": 2000},
    {"name": "pump", "pin": 2, "active": "low", "restore": "off", "max_on_s": 600, "min_switch_ms": 2000},
]}


def test_active_low_pin_is_driven_high_at_construction():
    simboard.reset()
    seen = []
    simboard.watch_pin(1, lambda pin, level: seen.append((pin, level)))
    simboard.watch_pin(2, lambda pin, level: seen.append((pin, level)))
    r = Relays(SIM_NODE, clock=lambda: 0)
    assert simboard.pin_level(1) == 0
    assert simboard.pin_level(2) == 1  # pump OFF = high, and never driven low on the way
    assert (2, 0) not in seen
    assert r.on("pump", now_ms=0)
    assert simboard.pin_level(2) == 0
    assert r.tick(600000) == 1  # max_on_s = 600
    assert simboard.pin_level(2) == 1
    r.on("fan", now_ms=1000)
    assert simboard.pin_level(1) == 1
    assert r.off("fan", now_ms=2000) is False  # min_switch_ms = 2000
    assert simboard.pin_level(1) == 1
    simboard.reset()
