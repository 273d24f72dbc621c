# Rule VM, engine and replay (device code) under CPython and MicroPython. Programs are assembled by
# hand here from the format in docs/rules.md (the compiler is host-only); every expected action and
# value below is worked out by hand from the spec.
import struct

from devtest import IS_MPY, raises, tmpdir
from fieldlink.rules import opcodes as O
from fieldlink.rules.engine import RuleEngine
from rules_replay import replay
from fieldlink.rules.verify import VerifyError, crc32, verify
from fieldlink.rules.vm import VM

NONE = -0x40000000


def asm(strings, inputs, rules, consts=(), windows=(), n_hyst=0, max_stack=2, n_actions=0,
        state=None, patch=None, fix_crc=True):
    """Assemble a program. inputs: (kind, init_const or 0xFF, name_string); windows: (input, cap);
    rules: (name_string, cond, then, else, for_ms, cooldown_ms) with code as bytes.
    patch: {offset: byte} applied before the checksum (header tampering)."""
    code = b""
    table = b""
    for name, cond, then, els, fo, co in rules:
        code += cond
        t = len(code)
        code += then
        e = len(code)
        code += els
        table += struct.pack("<BBHHHii", name, 0, t, e, len(code), fo, co)
    strs = b"".join(bytes([len(s)]) + s.encode() for s in strings)
    ins = b"".join(bytes([k, i, n, 0]) for k, i, n in inputs)
    wins = b"".join(bytes([i, c]) for i, c in windows)
    ks = b"".join(struct.pack("<i", k) for k in consts)
    if state is None:
        state = 3 * len(inputs) + 3 * len(rules) + n_hyst + sum(2 + 2 * c for _, c in windows)
    body = ins + wins + ks + table + strs + code
    total = 28 + len(body) + 4
    head = b"FLRV" + bytes([1, 0, len(inputs), len(windows), len(consts), len(rules), len(strings), n_hyst])
    head += struct.pack("<HHHHHHI", len(code), len(strs), max_stack, state, n_actions, 0, total)
    blob = bytearray(head + body)
    for off in (patch or {}):
        blob[off] = patch[off]
    crc = crc32(bytes(blob)) if fix_crc else 0
    return bytes(blob) + struct.pack("<I", crc)


# the threshold program: fan on when sht.temperature > 28 with hysteresis 1.5, off otherwise
COND_HOT = bytes([O.LOAD, 0, O.PUSHK, 0, O.PUSHK, 1, O.HYS, 0, O.GT])


def hot_program(for_ms=0, cooldown_ms=0):
    return asm(["hot", "sht.temperature", "relay.fan"],
               [(O.IN_SENSOR, 0xFF, 1), (O.IN_RELAY, 0xFF, 2)],
               [(0, COND_HOT, bytes([O.RON, 1]), bytes([O.ROFF, 1]), for_ms, cooldown_ms)],
               consts=[28000, 1500], n_hyst=1, max_stack=3, n_actions=2)


def acts(vm, n):
    return [tuple(vm.out[4 * j:4 * j + 4]) for j in range(n)]


def step(vm, t, temp=None):
    if temp is not None:
        vm.set_input(0, temp, t)
    return acts(vm, vm.run(t))


ON = (O.ACT_RELAY, 1, 1, 0)
OFF = (O.ACT_RELAY, 1, 0, 0)


def test_hysteresis_on_above_threshold_off_below_threshold_minus_hyst():
    vm = VM(verify(hot_program()))
    assert step(vm, 0, 27000) == []
    assert step(vm, 1000, 28000) == []          # not > 28
    assert step(vm, 2000, 28001) == [ON]
    assert vm.get_input(1) == 1                 # relay input follows the command
    assert step(vm, 3000, 27000) == []          # 27 > 26.5: stays on
    assert step(vm, 4000, 26501) == []
    assert step(vm, 5000, 26500) == [OFF]       # not > 26.5
    assert step(vm, 6000, 27000) == []          # back to threshold 28
    assert step(vm, 7000, 28500) == [ON]


def test_for_debounce_needs_the_condition_continuously():
    vm = VM(verify(hot_program(for_ms=5000)))
    assert step(vm, 0, 29000) == []
    assert step(vm, 3000, 29000) == []
    assert step(vm, 4000, 20000) == []          # dropped: timer restarts
    assert step(vm, 5000, 29000) == []
    assert step(vm, 9999, 29000) == []
    assert step(vm, 10000) == [ON]              # 5000 ms since 5000, no new reading needed
    assert step(vm, 11000, 20000) == [OFF]


def test_cooldown_delays_the_next_firing():
    vm = VM(verify(hot_program(cooldown_ms=10000)))
    assert step(vm, 0, 29000) == [ON]
    assert step(vm, 2000, 20000) == [OFF]       # turning off is not limited
    assert step(vm, 3000, 29000) == []          # in cooldown until 10000
    assert step(vm, 9999) == []
    assert step(vm, 10000) == [ON]
    assert step(vm, 11000, 20000) == [OFF]
    assert step(vm, 25000, 29000) == [ON]       # cooldown long over


def test_missing_reading_is_none_and_compares_false():
    vm = VM(verify(hot_program()))
    assert vm.get_input(0) == NONE
    assert step(vm, 0) == []


def test_time_wraps_at_2_pow_30():
    vm = VM(verify(hot_program(for_ms=5000)))
    base = (1 << 30) - 2000
    assert step(vm, base, 29000) == []
    assert step(vm, base + 4999, 29000) == []   # run() masks to 30 bits: 2999
    assert step(vm, base + 5000, 29000) == [ON]


def _expr_vm(code, consts=(), inputs=None, windows=(), max_stack=4):
    """A program whose condition is `code`; returns (vm, cond_end) to evaluate it with vm._exec."""
    inputs = inputs or [(O.IN_SENSOR, 0xFF, 1), (O.IN_SENSOR, 0xFF, 2), (O.IN_RELAY, 0xFF, 3)]
    blob = asm(["r", "a.x", "a.y", "relay.k"], inputs,
               [(0, code, bytes([O.RON, 2]), b"", 0, 0)],
               consts=consts, windows=windows, max_stack=max_stack, n_actions=1)
    return VM(verify(blob)), len(code)


def _eval2(op, a, b):
    vm, end = _expr_vm(bytes([O.LOAD, 0, O.LOAD, 1, op]))
    if a != NONE:
        vm.set_input(0, a, 0)
    if b != NONE:
        vm.set_input(1, b, 0)
    return vm._exec(0, end)


def test_arithmetic_fixed_point_truncates_and_saturates():
    assert _eval2(O.ADD, 1500, 2250) == 3750
    assert _eval2(O.SUB, 1500, 2250) == -750
    assert _eval2(O.MUL, 1500, 2500) == 3750          # 1.5 * 2.5
    assert _eval2(O.MUL, -1500, 1001) == -1501        # -1.5015 truncated toward zero
    assert _eval2(O.DIV, 1000, 3000) == 333           # 1/3
    assert _eval2(O.DIV, -1000, 3000) == -333
    assert _eval2(O.DIV, 1000, 0) == NONE
    assert _eval2(O.ADD, 0x3FFFFFFF, 5) == 0x3FFFFFFF
    assert _eval2(O.MUL, -1000000000, 1000000) == -0x3FFFFFFF
    assert _eval2(O.ADD, NONE, 5) == NONE
    assert _eval2(O.GT, NONE, 5) == 0
    assert _eval2(O.LE, 5, 5) == 1
    assert _eval2(O.NE, 5, 5) == 0


def test_aggregates_over_samples_and_time():
    vm, _ = _expr_vm(bytes([O.PUSHS, 1]), consts=[3000, 2500], windows=[(0, 4)])
    for t, v in ((0, 10000), (1000, 20000), (2000, 60000), (3000, 30000), (4000, -10000)):
        vm.set_input(0, v, t)
        vm.run(t)
    # ring holds the last 4: 20, 60, 30, -10 (times 1000..4000)
    assert vm._agg(O.AGG_AVG, 0, 4) == 25000
    assert vm._agg(O.AGG_AVG, 0, 3) == 26666          # floor(80/3 * 1000)
    assert vm._agg(O.AGG_MIN, 0, 3) == -10000
    assert vm._agg(O.AGG_MAX, 0, 4) == 60000
    assert vm._agg(O.AGG_AVG, 0, 2) == 10000
    # rate over 3 samples: (-10 - 60) / 2 s = -35/s = -2100 per minute
    assert vm._agg(O.AGG_RATE, 0, 3) == -2100000
    # time windows: samples with age <= 2500 ms at now=4000: times 2000, 3000, 4000
    assert vm._agg(O.AGG_MAX | O.AGG_TIME, 0, 1) == 60000
    assert vm._agg(O.AGG_AVG | O.AGG_TIME, 0, 0) == 25000  # age <= 3000 ms includes t=1000: all 4
    vm.run(100000)
    assert vm._agg(O.AGG_AVG | O.AGG_TIME, 0, 0) == NONE   # all older than 3 s
    assert vm._agg(O.AGG_AVG, 0, 1) == -10000


def test_avg_floor_of_negative_values():
    vm, _ = _expr_vm(bytes([O.PUSHS, 1]), windows=[(0, 3)])
    for t, v in ((0, -1), (1, -1), (2, 0)):
        vm.set_input(0, v, t)
        vm.run(t)
    assert vm._agg(O.AGG_AVG, 0, 3) == -1             # floor(-2/3)


def test_absent_and_time_of_day_window():
    code = bytes([O.ABSENT, 0, 0, O.TOD, 1, 2, O.AND])
    vm, end = _expr_vm(code, consts=[60000, 22 * 3600000, 6 * 3600000])
    vm.run(1000, 23 * 3600000)                         # first tick: absence counts from here
    assert vm._exec(0, end) == 0
    vm.now = 61000
    vm.tod = 23 * 3600000
    assert vm._exec(0, end) == 1                       # 60 s without a reading, 23:00 in 22:00-06:00
    vm.tod = 5 * 3600000
    assert vm._exec(0, end) == 1                       # wraps midnight
    vm.tod = 6 * 3600000
    assert vm._exec(0, end) == 0                       # end is exclusive
    vm.tod = NONE
    assert vm._exec(0, end) == 0                       # clock not set
    vm.set_input(0, 1, 61000)
    vm.tod = 23 * 3600000
    assert vm._exec(0, end) == 0


def test_jumps_and_relay_priority_guard():
    # rule 0 (high): fan on while flag; rule 1 (low): fan off when flag2, skipped while rule 0 active
    strings = ["hi", "lo", "flag.a", "flag.b", "relay.fan"]
    inputs = [(O.IN_FLAG, 0, 2), (O.IN_FLAG, 0, 3), (O.IN_RELAY, 0xFF, 4)]
    blob = asm(strings, inputs, [
        (0, bytes([O.LOAD, 0]), bytes([O.RON, 2]), b"", 0, 0),
        (1, bytes([O.LOAD, 1]), bytes([O.RACT, 0, O.JNZ, 0, 0, O.ROFF, 2]), b"", 0, 0),
    ], consts=[0], max_stack=1, n_actions=2, patch=None)
    # patch the JNZ target: code = LOAD 0 | RON 2 | LOAD 1 | RACT 0 JNZ tt | ROFF 2 -> target 13
    blob = bytearray(blob[:-4])
    code_at = len(blob) - 13
    assert blob[code_at + 8] == O.JNZ
    blob[code_at + 9] = 13
    blob = bytes(blob) + struct.pack("<I", crc32(bytes(blob)))
    vm = VM(verify(blob))
    vm.set_input(0, 1, 0)
    vm.set_input(1, 1, 0)
    assert acts(vm, vm.run(0)) == [(O.ACT_RELAY, 2, 1, 0)]       # low rule's off skipped
    vm.set_input(0, 0, 1)
    vm.set_input(1, 0, 1)
    vm.run(1)
    vm.set_input(1, 1, 2)
    assert acts(vm, vm.run(2)) == [(O.ACT_RELAY, 2, 0, 1)]       # high rule inactive: off goes out


def _all_ops_program():
    strings = ["big", "a.x", "relay.fan", "var.v", "hot", "a.y"]
    inputs = [(O.IN_SENSOR, 0xFF, 1), (O.IN_RELAY, 0xFF, 2), (O.IN_VAR, 0, 3), (O.IN_SENSOR, 0xFF, 5)]
    consts = [0, 20000, 1000, 60000, 3000, 2 * 3600000, 8 * 3600000]
    cond = bytes([O.LOAD, 0, O.PUSHK, 1, O.PUSHK, 2, O.HYS, 0, O.GT,
                  O.AGG, O.AGG_AVG, 0, 4, O.AGG, O.AGG_MAX | O.AGG_TIME, 0, 4, O.ADD,
                  O.AGG, O.AGG_RATE, 0, 3, O.SUB, O.AGG, O.AGG_MIN, 0, 2, O.MUL, O.PUSHK, 2, O.DIV, O.NEG,
                  O.PUSHK, 1, O.LT, O.OR,
                  O.ABSENT, 3, 3, O.OR, O.TOD, 5, 6, O.NOT, O.AND, O.SYS, 0, O.PUSHK, 0, O.GE, O.AND])
    then = bytes([O.RON, 1, O.EVENT, 4, 2, O.LOAD, 2, O.PUSHK, 2, O.ADD, O.SETV, 2, O.IVAL, 3,
                  O.RACT, 0, O.JZ, 0, 0, O.RPULSE, 1, 4])
    els = bytes([O.ROFF, 1, O.SLEEP, 3])
    return strings, inputs, consts, cond, then, els


def _all_ops_blob():
    strings, inputs, consts, cond, then, els = _all_ops_program()
    # JZ target: then starts at len(cond); JZ operand at offset 17 of then, RPULSE at 19, end 22
    target = len(cond) + len(then)
    then = then[:17] + bytes([target & 0xFF, target >> 8]) + then[19:]
    return asm(strings, inputs, [(0, cond, then, els, 0, 0)], consts=consts, windows=[(0, 8)],
               n_hyst=1, max_stack=4, n_actions=6)


def test_every_opcode_runs_without_heap_allocation():
    vm = VM(verify(_all_ops_blob()))
    vals = [18000, 19000, 25000, 24000, 18500, 30000, 19999, 21000]
    counts = [0, 0]
    # warm-up outside the lock (first tick initialises timestamps)
    vm.run(0, 3600000, 0)
    if IS_MPY:
        import micropython
        micropython.heap_lock()
    try:
        t = 1000
        for i in range(40):
            vm.set_input(0, vals[i % 8], t)
            n = vm.run(t, 3600000 + t, t)
            counts[0] += n
            counts[1] += 1
            t += 1000
    finally:
        if IS_MPY:
            micropython.heap_unlock()
    assert counts[1] == 40
    assert counts[0] > 0            # the program does fire (relay on/event/interval/pulse, then off/sleep)


def test_engine_hot_swap_at_tick_boundary_and_persist():
    d = tmpdir("rules")
    path = d + "/rules.bin"
    e = RuleEngine(path)
    assert e.info()["loaded"] is False
    assert e.tick(0, {"sht.temperature": 30.0}) == []
    e.load(hot_program())
    assert e.prog is None and e.pending is not None          # staged until the next tick
    assert e.tick(1000, {"sht": {"temperature": 29.5, "relative_humidity": 50.0, "valid": True}}) == [
        {"relay": "fan", "op": "on", "rule": "hot"}]
    assert e.get("sht.temperature") == 29.5
    assert e.tick(2000, {"sht.temperature": 26.0}) == [{"relay": "fan", "op": "off", "rule": "hot"}]
    # a reading marked invalid is ignored
    assert e.tick(3000, {"sht": {"temperature": 99.0, "valid": False}}) == []
    # a bad program is rejected with a reason; the running one stays
    bad = bytearray(hot_program(for_ms=1000))
    bad[0] = ord("X")
    err = raises(VerifyError, e.load, bytes(bad))
    assert "magic" in str(err) and "magic" in e.last_error
    assert e.tick(4000, {"sht.temperature": 29.0}) == [{"relay": "fan", "op": "on", "rule": "hot"}]
    # the accepted program was persisted: a new engine (reboot) restores it
    e2 = RuleEngine(path)
    assert e2.info()["loaded"] is True and e2.info()["size"] == len(hot_program())
    assert e2.tick(0, {"sht.temperature": 29.0}) == [{"relay": "fan", "op": "on", "rule": "hot"}]
    # swap to a program with a 5 s debounce: new state, new semantics from the next tick on
    e2.load(hot_program(for_ms=5000))
    assert e2.tick(1000, {"sht.temperature": 29.0}) == []
    assert e2.tick(6000, {"sht.temperature": 29.0}) == [{"relay": "fan", "op": "on", "rule": "hot"}]
    assert RuleEngine(path).prog.rule_for[0] == 5000
    e2.unload()
    assert RuleEngine(path).info()["loaded"] is False


def test_engine_rejects_corrupt_persisted_program():
    d = tmpdir("rules2")
    path = d + "/rules.bin"
    with open(path, "wb") as f:
        f.write(hot_program()[:-1])
    e = RuleEngine(path)
    assert e.prog is None and "persisted program rejected" in e.last_error
    assert e.tick(0, {"sht.temperature": 40}) == []


def test_engine_action_dicts_and_set_input_kinds():
    vm_blob = _all_ops_blob()
    e = RuleEngine(None)
    e.load(vm_blob)
    e.tick(0, None, 3600000)
    assert e.set_input("a.x", 25, 1000) is True          # 25 > 20: the hysteresis term is true
    assert e.set_input("nope", 1, 1000) is False
    got = e.tick(1000, None, 3600000)
    assert got == [{"relay": "fan", "op": "on", "rule": "big"},
                   {"event": "hot", "severity": "alert", "rule": "big"},
                   {"interval": 60000, "rule": "big"},
                   {"relay": "fan", "op": "pulse", "ms": 3000, "rule": "big"}]
    assert e.get("var.v") == 1.0


CSV = """# temperature ramp with a gap
time_s,sht.temperature,unknown.col
0,27.5,1
1,28.25,
2.5,,
3,26.6,
4,26.5,
"""


def test_replay_writes_the_action_log():
    out = []
    n = replay(hot_program(), CSV.split("\n"), out.append)
    assert n == 5
    assert out == ["1000 hot relay fan on\n", "4000 hot relay fan off\n"]


def test_replay_rejects_bad_csv():
    from rules_replay import ReplayError
    e = raises(ReplayError, replay, hot_program(), ["when,sht.temperature", "0,1"], print)
    assert "first column" in str(e)
    e = raises(ReplayError, replay, hot_program(), ["time_s,sht.temperature", "0,abc"], print)
    assert "line 2" in str(e)
    e = raises(ReplayError, replay, hot_program(), ["time_ms,sht.temperature", "10,1", "5,1"], print)
    assert "backwards" in str(e)


def test_fixed_point_parsing_is_exact():
    assert O.parse_fixed("21.5") == 21500
    assert O.parse_fixed("-0.0005") == -1
    assert O.parse_fixed("0.0004") == 0
    assert O.parse_fixed("+3") == 3000
    assert O.parse_fixed("9999999") == 0x3FFFFFFF
    assert raises(ValueError, O.parse_fixed, "1e3")
    assert O.format_fixed(-1500) == "-1.5" and O.format_fixed(NONE) == "none"
    assert O.to_fixed(21.4996) == 21500 and O.to_fixed(-0.0015) == -2 and O.to_fixed(True) == 1
