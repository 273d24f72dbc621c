"""Rules compiler: golden programs with hand-written bytecode, errors at file:line:column, the CLI,
simulation on CPython vs MicroPython, and hypothesis properties (random valid rules compile, verify,
stay within the limits and run)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from fieldlink.rules import opcodes as O
from fieldlink.rules.verify import crc32, verify
from fieldlink.rules.vm import VM
from fieldlink_host.cli import main
from fieldlink_host.rules.compiler import compile_file, compile_text
from fieldlink_host.rules.parser import RulesError
from fieldlink_sim.rules_replay import replay
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "rules"


def _blob(header_counts: bytes, tail: bytes, code_size: int, str_size: int, stack: int, state: int,
          actions: int) -> bytes:
    total = 28 + len(tail) + 4
    head = b"FLRV\x01\x00" + header_counts + struct.pack("<HHHHHHI", code_size, str_size, stack, state,
                                                          actions, 0, total)
    return head + tail + struct.pack("<I", crc32(head + tail))


def _strings(*names: str) -> bytes:
    return b"".join(bytes([len(n)]) + n.encode() for n in names)


def test_golden_threshold_with_hysteresis() -> None:
    c = compile_text("board: sim-node\nrules:\n  - name: hot\n    when: sht.temperature > 28 hyst 1.5\n"
                     "    then: [{on: fan}]\n    else: [{off: fan}]\n")
    strs = _strings("sht.temperature", "relay.fan", "hot")
    tail = (bytes([O.IN_SENSOR, 0xFF, 0, 0, O.IN_RELAY, 0xFF, 1, 0])       # inputs
            + struct.pack("<ii", 28000, 1500)                                # consts
            + struct.pack("<BBHHHii", 2, 0, 9, 11, 13, 0, 0)                 # rule: name, then, else, end
            + strs
            + bytes([0x03, 0, 0x01, 0, 0x01, 1, 0x16, 0, 0x12,               # LOAD 0 PUSHK 0 PUSHK 1 HYS 0 GT
                     0x40, 1,                                                # RON 1
                     0x41, 1]))                                              # ROFF 1
    # counts: 2 inputs, 0 windows, 2 consts, 1 rule, 3 strings, 1 hysteresis cell
    expected = _blob(bytes([2, 0, 2, 1, 3, 1]), tail, 13, len(strs), 3, 2 * 3 + 3 + 1, 2)
    assert c.program == expected
    assert "       6  HYS     0 18" in c.listing


def test_golden_window_absent_schedule_and_priority_guard() -> None:
    src = """board: sim-node
rules:
  - name: b
    when: not relay.fan and between(22:00, 06:00)
    then:
      - off: pump
  - name: a
    when: avg(sht.relative_humidity, 4) >= 80 or absent(light.lux, 30s)
    priority: 2
    then:
      - on: pump
      - event: wet
        severity: alert
"""
    c = compile_text(src)
    assert c.rule_order == ["a", "b"]  # higher priority first
    strs = _strings("sht.relative_humidity", "light.lux", "relay.pump", "wet", "a", "relay.fan", "b")
    code = bytes([
        0x05, 0, 0, 4,        # AGG avg window0 4 samples
        0x01, 0,              # PUSHK 80
        0x13,                 # GE
        0x04, 1, 1,           # ABSENT light.lux 30 s
        0x19,                 # OR
        0x40, 2,              # then: RON relay.pump
        0x43, 3, 2,           #       EVENT "wet" alert
        0x03, 3,              # rule b: LOAD relay.fan
        0x1A,                 # NOT
        0x08, 2, 3,           # TOD 22:00 06:00
        0x18,                 # AND
        0x07, 0,              # then: RACT rule a
        0x32, 30, 0,          #       JNZ 30 (skip: the higher-priority rule a drives the pump)
        0x41, 2,              #       ROFF relay.pump
    ])
    tail = (bytes([O.IN_SENSOR, 0xFF, 0, 0, O.IN_SENSOR, 0xFF, 1, 0, O.IN_RELAY, 0xFF, 2, 0,
                   O.IN_RELAY, 0xFF, 5, 0])
            + bytes([0, 4])                                                   # window: input 0, 4 samples
            + struct.pack("<iiii", 80000, 30000, 22 * 3600000, 6 * 3600000)
            + struct.pack("<BBHHHii", 4, 0, 11, 16, 16, 0, 0)
            + struct.pack("<BBHHHii", 6, 0, 23, 30, 30, 0, 0)
            + strs + code)
    state = 4 * 3 + 2 * 3 + (2 + 2 * 4)
    assert c.program == _blob(bytes([4, 1, 4, 2, 7, 0]), tail, 30, len(strs), 2, state, 3)


def test_golden_set_variable_and_durations() -> None:
    src = ("board: sim-node\nvars: {n: 1.5}\nrules:\n  - name: count\n    when: true\n    for: 1.5s\n"
           "    cooldown: 2m\n    then:\n      - set: n\n        value: var.n * 2\n      - interval: 30s\n")
    c = compile_text(src)
    p = verify(c.program)
    assert list(p.consts) == [1500, 2000, 30000]
    assert p.code == bytes([0x02, 1, 0x03, 0, 0x01, 1, 0x22, 0x46, 0, 0x44, 2])
    assert p.rule_for[0] == 1500 and p.rule_cool[0] == 120000
    assert p.input_init[0] == 0  # var.n initialised from const 0 (1.5)


TEMPLATE = "board: sim-node\nrules:\n  - name: r\n    when: {cond}\n    then: [{{on: fan}}]\n"


@pytest.mark.parametrize("cond,where,reason", [
    ("sht2.temperature > 1", "4:11", "unknown sensor 'sht2' for board sim-node (sensors: sht, light, air)"),
    ("sht.pressure > 1", "4:11", "sensor 'sht' (sht4x) has no quantity 'pressure'"),
    ("sht.temperature", "4:11", "type error: a condition must be a boolean, got a number"),
    ("sht.temperature > 1 and 3", "4:31", "type error: 'and' needs booleans, got a number"),
    ("relay.fan > 1", "4:21", "type error: cannot compare a boolean with a number"),
    ("avg(sht.temperature, 500) > 1", "4:32", "limit exceeded: a window of 500 samples (max 128)"),
    ("avg(sht.temperature, 10m) > 1", "4:32", "needs 301 samples (max 128)"),
    ("sht.temperature > 30 and sht.temperature < 20", "4:52", "unreachable rule 'r'"),
    ("1 > 2", "4:13", "unreachable rule 'r': its condition is always false"),
    ("between(06:00, 06:00)", "4:11", "empty time window"),
    ("sht.temperature > 1 +", "4:32", "expected a value"),
    ("sht.temperature > 1 hyst sht.temperature", "4:36", "hysteresis must be a constant"),
    ("var.x > 1", "4:11", "undeclared var 'x'"),
    ("absent(sht.temperature, 25h)", "4:35", "limit exceeded"),
    ("foo(1)", "4:11", "unknown function 'foo'"),
    ("sht.temperature > 1 $", "4:31", "unexpected character '$'"),
])
def test_errors_carry_file_line_column(cond: str, where: str, reason: str) -> None:
    with pytest.raises(RulesError) as ei:
        compile_text(TEMPLATE.format(cond=cond), path="g.yaml")
    assert str(ei.value).startswith(f"g.yaml:{where}: "), str(ei.value)
    assert reason in str(ei.value)


def test_conflicting_relay_actions_need_priority() -> None:
    src = ("board: sim-node\nrules:\n  - name: a\n    when: sht.temperature > 30\n    then: [{on: fan}]\n"
           "  - name: b\n    when: sht.temperature < 10\n    then:\n      - off: fan\n")
    with pytest.raises(RulesError) as ei:
        compile_text(src, path="c.yaml")
    assert str(ei.value) == ("c.yaml:9:14: conflicting actions on relay 'fan' in rules 'a' and 'b' without "
                             "priority (give them different 'priority:' values)")
    compile_text(src.replace("    then:\n      - off", "    priority: 1\n    then:\n      - off"))


def test_document_errors() -> None:
    cases = [
        ("board: sim-node\nrules: [\n", "invalid YAML"),
        ("board: sim-node\nrules:\n  - name: a\n    when: true\n    then: [{on: heater}]\n",
         "t.yaml:5:17: unknown relay 'heater' on board sim-node (relays: fan, pump)"),
        ("board: sim-node\nrules:\n  - name: a\n    when: true\n    then: [{on: fan}]\n  - name: a\n"
         "    when: true\n    then: [{on: fan}]\n", "t.yaml:6:11: duplicate rule name 'a'"),
        ("board: sim-node\nrulez: []\n", "t.yaml:2:1: unknown key 'rulez'"),
        ("rules:\n  - name: a\n    when: true\n    then: [{on: fan}]\n", "t.yaml:1:1: no board"),
        ("board: nope\nrules:\n  - name: a\n    when: true\n    then: [{on: fan}]\n",
         "t.yaml:1:8: unknown board 'nope'"),
        ("board: sim-node\nrules:\n  - name: a\n    when: true\n    for: 10\n    then: [{on: fan}]\n",
         "t.yaml:5:10: 'for' must be a duration"),
        ("board: sim-node\nrules:\n  - name: a\n    when: true\n    then: [{pulse: pump}]\n",
         "t.yaml:5:12: pulse needs 'ms'"),
    ]
    for src, want in cases:
        with pytest.raises(RulesError) as ei:
            compile_text(src, path="t.yaml")
        assert want in str(ei.value), (str(ei.value), want)


def test_rule_count_limit() -> None:
    body = "".join(f"  - name: r{i}\n    when: sht.temperature > {i}\n    then: [{{event: e{i}}}]\n"
                   for i in range(O.MAX_RULES + 1))
    with pytest.raises(RulesError) as ei:
        compile_text("board: sim-node\nrules:\n" + body, path="m.yaml")
    line = 3 + 3 * O.MAX_RULES
    assert str(ei.value).startswith(f"m.yaml:{line}:11: limit exceeded: more than {O.MAX_RULES} rules")


def test_cli_compile_check_simulate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = str(ROOT / "examples" / "greenhouse.rules.yaml")
    out = tmp_path / "g.bin"
    assert main(["rules", "check", src, "--board", "sim-node"]) == 0
    assert "ok (7 rules" in capsys.readouterr().out
    assert main(["rules", "compile", src, "-o", str(out)]) == 0
    assert verify(out.read_bytes()).rule_names[0] == "vent_hot"
    log = tmp_path / "log.txt"
    page = tmp_path / "r.html"
    assert main(["rules", "simulate", str(out), "--csv", str(FIX / "greenhouse.csv"), "--start", "06:30",
                 "-o", str(log), "--html", str(page)]) == 0
    assert "178000 vent_hot relay fan on\n" in log.read_text()
    assert "<svg" in page.read_text() and "vent_hot" in page.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(TEMPLATE.format(cond="sht2.temperature > 1"))
    assert main(["rules", "check", str(bad)]) == 1
    assert f"{bad}:4:11: unknown sensor 'sht2'" in capsys.readouterr().err
    # simulate a tampered program: the verifier's reason is reported
    blob = bytearray(out.read_bytes())
    blob[-1] ^= 1
    out.write_bytes(bytes(blob))
    assert main(["rules", "simulate", str(out), "--csv", str(FIX / "greenhouse.csv")]) == 1
    assert "checksum mismatch" in capsys.readouterr().err


def test_simulation_is_byte_identical_on_cpython_and_micropython(tmp_path: Path) -> None:
    prog = compile_file(FIX / "greenhouse.rules.yaml").program
    (tmp_path / "p.bin").write_bytes(prog)
    csv = FIX / "greenhouse.csv"
    out: list[str] = []
    replay(prog, csv.read_text().splitlines(), out.append, 6 * 3600000 + 30 * 60000)
    cpy = "".join(out).encode()
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\nfrom rules_replay import replay\n"
        f"prog = open({str(tmp_path / 'p.bin')!r}, 'rb').read()\n"
        f"lines = open({str(csv)!r}).read().split('\\n')\n"
        "replay(prog, lines, sys.stdout.write, 6 * 3600000 + 30 * 60000)\n")
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([str(ROOT / "device" / "sim"), str(ROOT / "device")]))
    res = subprocess.run(["micropython", str(script)], capture_output=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout == cpy
    # hand-checked against the CSV (temperature 24 + 6 sin(i/100) every 2 s): above 28 from t=148 s,
    # 30 s debounce -> on at 178 s; below 26.5 (28 - 1.5) at i=272 -> off at 544 s; the temperature
    # column is empty from 800 s to 878 s -> absent for 60 s at 858 s, back at 880 s.
    for line in ("178000 vent_hot relay fan on", "178000 vent_hot event too_hot warning",
                 "544000 vent_hot relay fan off", "858000 sht_dead event sht_dead critical",
                 "858000 sht_dead interval - 5000", "880000 sht_dead interval - 2000"):
        assert line + "\n" in cpy.decode()
    assert "heat_spike" not in cpy.decode()  # max slope 6/100 per 2 s = 1.8/min < 2


# ----------------------------------------------------------------------------------------- hypothesis
NUM_INPUTS = ["sht.temperature", "sht.relative_humidity", "light.lux", "air.co2", "remote.out", "var.v"]
BOOL_INPUTS = ["relay.fan", "relay.pump", "flag.f"]


def num_expr(depth: int) -> st.SearchStrategy[str]:
    leaf = st.one_of(
        st.sampled_from(NUM_INPUTS),
        st.integers(-500, 500).map(str),
        st.tuples(st.sampled_from(["avg", "min", "max", "rate"]), st.sampled_from(NUM_INPUTS[:5]),
                  st.one_of(st.integers(2, 40).map(str), st.sampled_from(["10s", "1m", "90s"])))
        .map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
    )
    if depth <= 0:
        return leaf
    sub = num_expr(depth - 1)
    return st.one_of(leaf, st.tuples(sub, st.sampled_from(["+", "-", "*"]), sub)
                     .map(lambda t: f"({t[0]} {t[1]} {t[2]})"))


def bool_expr(depth: int) -> st.SearchStrategy[str]:
    cmp = st.tuples(num_expr(1), st.sampled_from(["<", "<=", ">", ">="]), st.integers(-100, 100),
                    st.sampled_from(["", " hyst 1", " hyst 0.5"])).map(lambda t: f"{t[0]} {t[1]} {t[2]}{t[3]}")
    leaf = st.one_of(cmp, st.sampled_from(BOOL_INPUTS),
                     st.sampled_from(["absent(sht.temperature, 30s)", "between(22:00, 06:00)",
                                      "between(08:00, 09:30)", "node.uptime > 60"]))
    if depth <= 0:
        return leaf
    sub = bool_expr(depth - 1)
    return st.one_of(leaf, st.tuples(sub, st.sampled_from(["and", "or"]), sub)
                     .map(lambda t: f"({t[0]} {t[1]} {t[2]})"), sub.map(lambda s: f"not {s}"))


ACTIONS = st.sampled_from(["{on: fan}", "{off: pump}", "{pulse: pump, ms: 500}", "{event: e, severity: alert}",
                           "{interval: 5s}", "{sleep: 1m}", "{set: v, value: var.v + 1}"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(bool_expr(2), st.lists(ACTIONS, min_size=1, max_size=3),
                          st.lists(ACTIONS, max_size=2), st.integers(0, 3)), min_size=1, max_size=12))
def test_random_valid_rules_compile_verify_and_stay_within_limits(rules: list) -> None:  # type: ignore[type-arg]
    lines = ["board: sim-node", "vars: {v: 0}", "flags: {f: true}", "remote: {out: 30s}", "rules:"]
    for i, (cond, then, els, fo) in enumerate(rules):
        lines += [f"  - name: r{i}", f"    when: \"{cond}\"", f"    priority: {i}", f"    for: {fo}s",
                  f"    then: [{', '.join(then)}]"]
        if els:
            lines.append(f"    else: [{', '.join(els)}]")
    text = "\n".join(lines) + "\n"
    try:
        c = compile_text(text)
    except RulesError as exc:
        # the only legitimate rejections of these rules are the documented static checks
        assert "unreachable rule" in str(exc) or "limit exceeded" in str(exc), str(exc)
        return
    p = verify(c.program)
    assert len(c.program) <= O.MAX_PROGRAM and len(p.code) <= O.MAX_CODE
    assert p.state_words <= O.MAX_STATE_WORDS and p.max_stack <= O.MAX_STACK
    assert len(p.rule_names) == len(rules)
    vm = VM(p)
    for t in range(0, 120000, 7000):
        for i in range(len(p.input_names)):
            if p.input_kind[i] in (O.IN_SENSOR, O.IN_REMOTE):
                vm.set_input(i, (t * 37 + i * 1000) % 90000 - 20000, t)
        n = vm.run(t, (t * 1000) % O.DAY_MS, t)
        assert 0 <= n <= p.n_actions


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_verifier_random_bytes(data: bytes) -> None:
    from fieldlink.rules.verify import VerifyError

    for blob in (data, b"FLRV\x01\x00" + data):
        try:
            verify(blob)
        except VerifyError:
            pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
