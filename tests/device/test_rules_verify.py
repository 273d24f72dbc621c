# Rule program verifier: every rejection reason has a crafted bad program here, and a bounded fuzz
# (random bytes and checksum-fixed mutations of valid programs) must only ever accept or reject --
# and every accepted mutant must then run in the VM without raising. CPython and MicroPython.
import struct

from devtest import IS_MPY, raises
from fieldlink.rules import opcodes as O
from fieldlink.rules.verify import VerifyError, crc32, verify
from fieldlink.rules.vm import VM
from test_rules_vm import COND_HOT, _all_ops_blob, asm

S = ["hot", "sht.temperature", "relay.fan"]
IN = [(O.IN_SENSOR, 0xFF, 1), (O.IN_RELAY, 0xFF, 2)]
K = [28000, 1500]
THEN = bytes([O.RON, 1])
ELSE = bytes([O.ROFF, 1])


def prog(cond=COND_HOT, then=THEN, els=ELSE, strings=S, inputs=IN, consts=K, windows=(), n_hyst=1,
         max_stack=3, n_actions=2, rules=None, **kw):
    rules = rules if rules is not None else [(0, cond, then, els, 0, 0)]
    return asm(strings, inputs, rules, consts=consts, windows=windows, n_hyst=n_hyst,
               max_stack=max_stack, n_actions=n_actions, **kw)


def simple(cond, then=THEN, els=b"", n_actions=1, **kw):
    return prog(cond=cond, then=then, els=els, n_hyst=kw.pop("n_hyst", 0), max_stack=kw.pop("max_stack", 2),
                n_actions=n_actions, **kw)


T = bytes([O.PUSHS, 1])  # a trivially true condition
RULES_AT = 44            # offset of the rule table in prog(): 28 + 2*4 inputs + 2*4 consts


def _cases():
    many_rules = [(0, T, THEN, b"", 0, 0)] * (O.MAX_RULES + 1)
    big_strings = ["x" * 250] * 34
    return [
        ("too short", b"FLRV\x01", "too short"),
        ("magic", prog(patch={0: ord("X")}), "bad magic"),
        ("version", prog(patch={4: 2}), "unsupported version"),
        ("flags", prog(patch={5: 1}), "unknown flags"),
        ("reserved header", prog(patch={22: 1}), "reserved header field"),
        ("size field", prog() + b"\x00", "size field says"),
        ("program size", prog(strings=S + big_strings), "exceeds limit 8192"),
        ("section sizes", prog(patch={12: 14}), "section sizes add up"),
        ("checksum", prog(fix_crc=False), "checksum mismatch"),
        ("inputs limit", prog(inputs=IN + [(O.IN_SENSOR, 0xFF, 1)] * 63), "too many inputs"),
        ("windows limit", prog(windows=[(0, 1)] * 33), "too many windows"),
        ("no rules", prog(rules=[]), "no rules"),
        ("rules limit", simple(T, rules=many_rules, n_actions=O.MAX_RULES + 1), "too many rules"),
        ("code limit", simple(T * 2049, max_stack=16), "code size 4100 exceeds"),
        ("stack limit", prog(max_stack=17), "declared stack depth 17"),
        ("string count", prog(patch={10: 4}), "string table shorter"),
        ("string length", prog(strings=S + [""]), "bad length"),
        ("string ascii", prog(strings=S + ["a b"]), "not printable"),
        ("string trailing", prog(patch={10: 2}), "trailing bytes"),
        ("input kind", prog(inputs=[(9, 0xFF, 1), IN[1]]), "unknown kind 9"),
        ("input init", prog(inputs=[(O.IN_SENSOR, 5, 1), IN[1]]), "initial value: const 5"),
        ("input bool init", prog(inputs=[IN[0], (O.IN_RELAY, 0, 2)]), "boolean initial value"),
        ("input name", prog(inputs=[(O.IN_SENSOR, 0xFF, 7), IN[1]]), "name: string 7"),
        ("input reserved", prog(patch={31: 1}), "input 0 reserved byte"),
        ("window input", prog(windows=[(5, 4)]), "window 0: input 5"),
        ("window kind", prog(windows=[(1, 4)]), "not a sensor or remote"),
        ("window cap 0", prog(windows=[(0, 0)]), "capacity 0 outside"),
        ("window cap 129", prog(windows=[(0, 129)]), "capacity 129 outside"),
        ("state field", prog(state=99), "state size field says 99"),
        ("state limit", prog(windows=[(0, 128)] * 6), "exceeds limit 1536"),
        ("rule name", prog(rules=[(9, COND_HOT, THEN, ELSE, 0, 0)]), "name: string 9"),
        ("rule reserved", prog(patch={RULES_AT + 1: 1}), "rule 0 reserved"),
        ("rule order", prog(patch={RULES_AT + 2: 0}), "segments out of order"),
        ("rule no actions", prog(els=b"", then=b"", n_actions=0), "has no actions"),
        ("rule for", prog(rules=[(0, COND_HOT, THEN, ELSE, O.MAX_DURATION_MS + 1, 0)]), "for/cooldown"),
        ("rule cooldown", prog(rules=[(0, COND_HOT, THEN, ELSE, 0, -1)]), "for/cooldown"),
        ("rules cover", prog(patch={RULES_AT + 6: 12}), "rules cover 12 of 13"),
        ("opcode", simple(bytes([0x99])), "unknown opcode 0x99"),
        ("past end", simple(bytes([O.PUSHS, 1, O.LOAD])), "runs past the end"),
        ("action in cond", simple(bytes([O.RON, 1]) + T, n_actions=2), "action RON"),
        ("const", simple(bytes([O.PUSHK, 9])), "const 9 out of range"),
        ("pushs", simple(bytes([O.PUSHS, 2])), "PUSHS value 2"),
        ("input operand", simple(bytes([O.LOAD, 9])), "input 9 out of range"),
        ("setv kind", simple(T, then=T + bytes([O.SETV, 0]), n_actions=0), "SETV target 0"),
        ("relay kind", simple(T, then=bytes([O.RON, 0])), "RON target 0 is not a relay"),
        ("absent kind", simple(bytes([O.ABSENT, 1, 0])), "ABSENT input 1"),
        ("duration range", simple(T, then=bytes([O.RPULSE, 1, 2]), consts=K + [0]), "duration 0 outside"),
        ("duration const", simple(T, then=bytes([O.IVAL, 7])), "const 7 out of range"),
        ("sleep duration", simple(T, then=bytes([O.SLEEP, 0]), consts=[O.MAX_DURATION_MS + 1]),
         "duration 86400001"),
        ("agg fn", simple(bytes([O.AGG, 4, 0, 1]), windows=[(0, 4)]), "unknown aggregate"),
        ("agg window", simple(bytes([O.AGG, 0, 1, 1]), windows=[(0, 4)]), "window 1 out of range"),
        ("agg count", simple(bytes([O.AGG, 0, 0, 5]), windows=[(0, 4)]), "sample count 5 outside 1..4"),
        ("agg time", simple(bytes([O.AGG, 0x80, 0, 3]), windows=[(0, 4)]), "const 3 out of range"),
        ("sys", simple(bytes([O.SYS, 2])), "system register 2"),
        ("ract", simple(bytes([O.RACT, 5])), "rule 5 out of range"),
        ("tod const", simple(bytes([O.TOD, 0, 4])), "const 4 out of range"),
        ("tod value", simple(bytes([O.TOD, 0, 1]), consts=[0, O.DAY_MS]), "time of day 86400000"),
        ("hys cell", prog(n_hyst=0), "hysteresis cell 0 out of range"),
        ("hys twice", prog(cond=COND_HOT + COND_HOT + bytes([O.AND]), max_stack=4), "used twice"),
        ("hys cmp", prog(cond=COND_HOT[:-1] + bytes([O.EQ])), "hysteresis comparison 0x14"),
        ("event string", simple(T, then=bytes([O.EVENT, 3, 0])), "string 3 out of range"),
        ("event severity", simple(T, then=bytes([O.EVENT, 0, 4])), "severity 4"),
        ("underflow", simple(bytes([O.ADD])), "stack underflow"),
        ("depth limit", simple(T * 17, max_stack=16), "stack depth exceeds 16"),
        ("declared depth", prog(max_stack=2), "exceeds declared 2"),
        ("backward jump", simple(T, then=bytes([O.PUSHS, 1, O.JZ, 2, 0, O.RON, 1])), "backward jump"),
        ("jump outside", simple(T + bytes([O.JMP, 9, 0]), max_stack=2), "outside its segment"),
        ("inconsistent", simple(T + T + bytes([O.JNZ, 9, 0]) + T, max_stack=3), "inconsistent stack depth"),
        ("unreachable", simple(T + bytes([O.JMP, 7, 0]) + T), "unreachable code at 5"),
        ("mid instruction", simple(T + bytes([O.JNZ, 6, 0, O.PUSHK, 0, O.NOT])), "middle of an instruction"),
        ("two mid instruction", simple(TWO_MID_JUMPS, max_stack=2), "middle of an instruction (13)"),
        ("cond leaves 2", simple(T + T), "leaves 2 values on the stack, expected 1"),
        ("then leaves 1", simple(T, then=T + THEN), "leaves 1 values on the stack, expected 0"),
        ("action count", prog(n_actions=3), "action count field says 3"),
    ]


def test_valid_programs_are_accepted():
    p = verify(prog())
    assert p.rule_names == ["hot"] and p.input_names == ["sht.temperature", "relay.fan"]
    assert p.state_words == 3 * 2 + 3 + 1 and p.max_stack == 3 and p.n_actions == 2
    assert list(p.rule_seg) == [0, 9, 11, 13]
    verify(_all_ops_blob())


def test_every_rejection_reason():
    for name, blob, reason in _cases():
        e = raises(VerifyError, verify, blob)
        assert reason in str(e), "%s: got %r, want %r" % (name, str(e), reason)


# Two jumps into the middle of instructions: JNZ at 2 -> 13 (inside PUSHK at 12), JNZ at 7 -> 11 (inside
# PUSHK at 10). docs/rules.md: the first bad jump in code order names its target, so 13, not the smaller
# 11. MicroPython's dict iterates by hash, where 11 comes before 13 (the bug this pins).
TWO_MID_JUMPS = bytes([O.PUSHS, 1, O.JNZ, 13, 0, O.PUSHS, 1, O.JNZ, 11, 0,
                       O.PUSHK, 0, O.PUSHK, 0, O.AND])


def test_two_bad_jumps_report_the_first_in_code_order():
    e = raises(VerifyError, verify, simple(TWO_MID_JUMPS, max_stack=2))
    assert str(e) == "rule 0 condition: jump into the middle of an instruction (13)", str(e)
    # the same two faults with the bad targets in ascending order: still the first jump's target
    asc = bytes([O.PUSHS, 1, O.JNZ, 11, 0, O.PUSHS, 1, O.JNZ, 13, 0, O.PUSHK, 0, O.PUSHK, 0, O.AND])
    e = raises(VerifyError, verify, simple(asc, max_stack=2))
    assert str(e) == "rule 0 condition: jump into the middle of an instruction (11)", str(e)


def test_every_fail_site_is_covered():
    if IS_MPY:
        return  # reads the verifier's source with CPython's inspect
    import inspect
    import re

    import fieldlink.rules.verify as V
    src = inspect.getsource(V)
    prefixes = []
    for m in re.finditer(r'_fail\("([^"]*)"', src):
        text = m.group(1)
        text = re.split(r"%[sdx0-9]+", text.replace("%s: ", ""))
        prefixes.append(max(text, key=len).strip())
    got = []
    for _, blob, _ in _cases():
        try:
            verify(blob)
        except VerifyError as e:
            got.append(str(e))
    missing = [p for p in prefixes if p and not any(p in g for g in got)]
    assert not missing, missing


class Rng:
    def __init__(self, seed):
        self.s = seed

    def next(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x

    def below(self, n):
        return self.next() % n


def _run_accepted(p):
    vm = VM(p)
    for t in (0, 1000, 5000, 70000):
        for i in range(len(p.input_kind)):
            vm.set_input(i, t * 7 - 30000, t)
        n = vm.run(t, 3600000, t)
        assert 0 <= n <= p.n_actions


def test_fuzz_random_bytes_never_crash():
    r = Rng(12345)
    for _ in range(300):
        n = r.below(120)
        blob = bytes(r.below(256) for _ in range(n))
        if r.below(2):
            blob = b"FLRV\x01\x00" + blob
        try:
            _run_accepted(verify(blob))
        except VerifyError:
            pass


def test_fuzz_mutated_programs_with_fixed_checksum():
    r = Rng(777)
    seeds = [prog(), _all_ops_blob(), simple(bytes([O.AGG, 0x83, 0, 0, O.PUSHK, 0, O.GT]), windows=[(0, 4)])]
    accepted = 0
    for it in range(600 if not IS_MPY else 300):
        b = bytearray(seeds[it % len(seeds)][:-4])
        for _ in range(1 + r.below(3)):
            b[r.below(len(b))] = r.below(256)
        struct.pack_into("<I", b, 24, len(b) + 4)
        blob = bytes(b) + struct.pack("<I", crc32(bytes(b)))
        try:
            p = verify(blob)
        except VerifyError:
            continue
        accepted += 1
        _run_accepted(p)
    assert accepted > 0  # some mutations (constants, durations) keep the program valid
