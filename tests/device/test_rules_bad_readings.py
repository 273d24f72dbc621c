# RuleEngine.tick with bad readings (NaN, infinities, strings, odd shapes): the bad reading is refused
# and counted, the rules still run on the others that tick (docs/rules.md "Numbers"). Both runtimes.
from test_rules_vm import hot_program

from fieldlink.rules.engine import RuleEngine

NAN = float("nan")
INF = float("inf")


def _engine():
    e = RuleEngine(None)
    e.load(hot_program(), persist=False)
    return e


def test_bad_reading_is_counted_and_rules_still_run():
    e = _engine()
    e.tick(0, {"sht.temperature": 20.0})
    for bad in (NAN, INF, -INF, "30", b"x", [1], {"a": 1}):
        e.tick(1000, {"sht.temperature": bad})
    assert e.bad_readings == 6  # the dict is a per-sensor reading with no quantity: not counted as bad
    assert e.get("sht.temperature") == 20.0  # the last good value stayed
    acts = e.tick(2000, {"sht.temperature": 30.0, "sht": {"temperature": NAN, "valid": True}})
    assert e.bad_readings == 7
    assert {"relay": "fan", "op": "on", "rule": "hot"} in acts  # the good reading ran the rule


def test_node_style_readings_with_nan_do_not_stop_the_tick():
    e = _engine()
    acts = e.tick(0, {"sht": {"temperature": 31.0, "relative_humidity": NAN, "valid": True}})
    assert {"relay": "fan", "op": "on", "rule": "hot"} in acts
    assert e.tick(1000, {"sht": {"temperature": INF, "valid": True}}) == []
    assert e.bad_readings == 1  # relative_humidity is not an input of this program: ignored, not counted
    assert e.info()["bad_readings"] == 1


def test_odd_shapes_are_counted_not_raised():
    e = _engine()
    e.tick(0, [("sht.temperature", 1)])
    e.tick(0, {(1, 2): 3})
    e.tick(0, None)
    e.tick(0, {}, tod_ms=NAN)
    e.tick(0, {}, tod_ms="x")
    assert e.bad_readings == 2
