"""C rules verifier and VM == the Python device code (fieldlink.rules.verify / vm).

- Every existing rules test (tests/device/test_rules_*.py, tests/unit/test_rules_compiler.py) runs again
  with the Python VM replaced by a lockstep VM that runs the C VM on the same state every tick and
  compares action count, outputs and every state word, and with verify() checked against the C
  verifier (same verdict, same message): every program and CSV those tests use goes through both.
- Random rule files compiled and ticked thousands of times in both VMs side by side.
- Every crafted bad program of test_rules_verify is refused by C with verify.py's exact message; a
  bounded mutation fuzzer keeps both verifiers in agreement; the C VM never runs a refused program.
- The number model (lead's decision): hand-computed values for saturation, PUSHK clamping, NEG.
"""

from __future__ import annotations

import ctypes as C
import importlib.util
import inspect
import random
import struct
import sys
from pathlib import Path
from typing import Any

import fieldlink_sim.rules_replay as pyreplay
import lockstep
import pytest
from ccore import VM as CVM
from ccore import Core, CoreError, VErr
from fieldlink.rules import engine as pyengine
from fieldlink.rules import opcodes as O
from fieldlink.rules import verify as pyverify
from fieldlink.rules import vm as pyvm
from fieldlink_host.rules.compiler import compile_file, compile_text
from fieldlink_host.rules.parser import RulesError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "rules"
MAXV, NONE = 0x3FFFFFFF, -0x40000000


def _load(path: Path, name: str) -> Any:
    if name in sys.modules:
        return sys.modules[name]
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))  # bench/rules.py imports its sibling _bench
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def rules_test_modules() -> list[Any]:
    import test_rules_clock
    import test_rules_e2e
    import test_rules_e2e_chip
    import test_rules_verify
    import test_rules_vm

    comp = _load(ROOT / "tests" / "unit" / "test_rules_compiler.py", "fl_native_test_rules_compiler")
    return [test_rules_vm, test_rules_verify, test_rules_e2e, test_rules_e2e_chip, test_rules_clock, comp]


@pytest.fixture()
def patched(core: Core, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every module that uses VM / verify gets the lockstep versions."""
    mods = rules_test_modules()
    vm_cls = lockstep.make_lockstep(core)

    def checked(blob: Any) -> Any:
        return lockstep.checked_verify(core, blob)

    import rules_replay  # the same file as fieldlink_sim.rules_replay, imported by its unix-port name
    from fieldlink.rules import native_vm  # RuleEngine's make_vm: the Python VM when flnative is absent

    for m in [pyengine, native_vm, pyreplay, rules_replay, *mods]:
        if hasattr(m, "VM"):
            monkeypatch.setattr(m, "VM", vm_cls)
        if hasattr(m, "verify"):
            monkeypatch.setattr(m, "verify", checked)
    for k in lockstep.STATS:
        lockstep.STATS[k] = 0
    return mods


# parametrized compiler tests only check compile errors (no program reaches verify or the VM)
NOT_RERUN = {"test_errors_carry_file_line_column"}


def test_existing_rules_tests_in_lockstep(patched: list[Any], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    ran = []
    for mod in patched:
        for name, fn in inspect.getmembers(mod, inspect.isfunction):
            if not name.startswith("test_") or fn.__module__ != mod.__name__ or name in NOT_RERUN:
                continue
            params = inspect.signature(fn).parameters
            kwargs: dict[str, Any] = {}
            for p in params:
                kwargs[p] = {"tmp_path": tmp_path / f"{mod.__name__}-{name}", "capsys": capsys}[p]
            if "tmp_path" in kwargs:
                kwargs["tmp_path"].mkdir()
            fn(**kwargs)
            ran.append(name)
    s = lockstep.STATS
    # the suite really went through both implementations
    assert len(ran) >= 30, ran
    assert s["ticks"] > 2000 and s["vms"] > 100 and s["verified"] > 100 and s["rejected"] > 60, s
    print("lockstep:", s)


def test_greenhouse_fixture_replay_in_lockstep(patched: list[Any]) -> None:
    prog = compile_file(FIX / "greenhouse.rules.yaml").program
    lines = (FIX / "greenhouse.csv").read_text().splitlines()
    out: list[str] = []
    ticks = pyreplay.replay(prog, lines, out.append, 6 * 3600000 + 30 * 60000)
    assert ticks == lockstep.STATS["ticks"] > 100
    assert "178000 vent_hot relay fan on\n" in out  # hand-checked in test_rules_compiler


# ------------------------------------------------------------------ random programs, side by side

NUM = ["sht.temperature", "sht.relative_humidity", "light.lux", "air.co2", "remote.out", "var.v"]
BOOL = ["relay.fan", "relay.pump", "flag.f"]


def num_expr(depth: int) -> st.SearchStrategy[str]:
    leaf = st.one_of(
        st.sampled_from(NUM), st.integers(-2000000, 2000000).map(str),
        st.sampled_from(["0.001", "1073741.823", "-999999.5", "0"]),
        st.tuples(st.sampled_from(["avg", "min", "max", "rate"]), st.sampled_from(NUM[:5]),
                  st.one_of(st.integers(1, 40).map(str), st.sampled_from(["10s", "1m", "90s", "1h"])))
        .map(lambda t: f"{t[0]}({t[1]}, {t[2]})"))
    if depth <= 0:
        return leaf
    sub = num_expr(depth - 1)
    return st.one_of(leaf, st.tuples(sub, st.sampled_from(["+", "-", "*", "/"]), sub)
                     .map(lambda t: f"({t[0]} {t[1]} {t[2]})"), sub.map(lambda s: f"-{s}"))


def bool_expr(depth: int) -> st.SearchStrategy[str]:
    cmp = st.tuples(num_expr(2), st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), st.integers(-3000, 3000),
                    st.sampled_from(["", " hyst 1", " hyst 0.5", " hyst 100"])).map(
        lambda t: f"{t[0]} {t[1]} {t[2]}{t[3] if t[1] not in ('==', '!=') else ''}")
    leaf = st.one_of(cmp, st.sampled_from(BOOL),
                     st.sampled_from(["absent(sht.temperature, 30s)", "absent(remote.out, 2m)",
                                      "between(22:00, 06:00)", "between(08:00, 09:30)", "node.uptime > 60",
                                      "time.of_day > 43200"]))
    if depth <= 0:
        return leaf
    sub = bool_expr(depth - 1)
    return st.one_of(leaf, st.tuples(sub, st.sampled_from(["and", "or"]), sub)
                     .map(lambda t: f"({t[0]} {t[1]} {t[2]})"), sub.map(lambda s: f"not {s}"))


ACTIONS = st.sampled_from(["{on: fan}", "{off: fan}", "{on: pump}", "{pulse: pump, ms: 500}",
                           "{event: e, severity: alert}", "{interval: 5s}", "{sleep: 1m}",
                           "{set: v, value: var.v + 1}", "{set: v, value: sht.temperature * 2}"])
RULES = st.lists(st.tuples(bool_expr(2), st.lists(ACTIONS, min_size=1, max_size=3), st.lists(ACTIONS, max_size=2),
                           st.integers(0, 20), st.integers(0, 30), st.integers(0, 3)), min_size=1, max_size=10)


def rules_text(rules: list[Any]) -> str:
    lines = ["board: sim-node", "vars: {v: 0}", "flags: {f: true}", "remote: {out: 30s}", "rules:"]
    for i, (cond, then, els, fo, cool, pri) in enumerate(rules):
        lines += [f"  - name: r{i}", f"    when: \"{cond}\"", f"    priority: {pri * 10 + i}", f"    for: {fo}s",
                  f"    cooldown: {cool}s", f"    then: [{', '.join(then)}]"]
        if els:
            lines.append(f"    else: [{', '.join(els)}]")
    return "\n".join(lines) + "\n"


def tick_side_by_side(core: Core, blob: bytes, ticks: int, seed: int) -> int:
    """Python VM and C VM, each on its own state from the start; compare after every tick."""
    pyblob = blob if lockstep.python_vm_clamps() else lockstep.model_blob(blob)
    assert pyblob is not None
    pp = pyverify.verify(pyblob)
    py = pyvm.VM(pp)
    c = CVM(core.verify(blob))
    assert c.st == list(py.st)
    rng = random.Random(seed)
    t = rng.randrange(1 << 30)
    fired = 0
    for _ in range(ticks):
        t += rng.choice([0, 1, 250, 1000, 1000, 5000, 61000, 3600000])
        for i, kind in enumerate(pp.input_kind):
            if rng.random() < 0.6:
                if kind in (O.IN_RELAY, O.IN_FLAG):
                    v = rng.randrange(2)
                else:
                    v = rng.choice([rng.randrange(-50000, 50000), rng.randrange(-MAXV - 5, MAXV + 5), 0])
                py.set_input(i, v, t)
                c.set_input(i, v, t)
        tod = NONE if rng.random() < 0.1 else rng.randrange(O.DAY_MS)
        up = rng.randrange(0, 2 * MAXV)
        n = py.run(t, tod, up)
        assert c.run(t, tod, up) == n
        assert c.out[: 4 * n] == list(py.out[: 4 * n])
        assert c.st == list(py.st), f"state differs after tick at {t}"
        fired += n
    return fired


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(RULES, st.integers(0, 2 ** 32))
def test_random_programs_tick_identically(core: Core, rules: list[Any], seed: int) -> None:
    try:
        prog = compile_text(rules_text(rules)).program
    except RulesError as exc:
        assert any(s in str(exc) for s in ("unreachable rule", "limit exceeded", "type error", "conflicting")), exc
        return
    tick_side_by_side(core, prog, 1500, seed)


def test_bench_programs_tick_identically(core: Core) -> None:
    bench = _load(ROOT / "bench" / "rules.py", "fl_native_bench_rules")
    fired = sum(tick_side_by_side(core, bench.program(n), 3000, n) for n in (1, 20, 100))
    assert fired > 100  # the programs do act


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(RULES, st.integers(0, 2 ** 32))
def test_software_division_of_32_bit_targets_ticks_identically(core_softdiv: Core, rules: list[Any],
                                                              seed: int) -> None:
    try:
        prog = compile_text(rules_text(rules)).program
    except RulesError:
        return
    tick_side_by_side(core_softdiv, prog, 600, seed)


# ------------------------------------------------------------------ verifier: crafted bad programs

def c_reject(core: Core, blob: bytes) -> tuple[int, str]:
    with pytest.raises(CoreError) as ei:
        core.verify(blob)
    return ei.value.code, str(ei.value)


def extra_bad_programs() -> list[bytes]:
    """Programs for the rejection reasons test_rules_verify does not craft (hand-assembled)."""
    import test_rules_verify as V
    from test_rules_vm import asm

    T, THEN = V.T, V.THEN
    out = [
        V.prog(rules=[(0, V.COND_HOT, THEN, V.ELSE, 0, 0), (0, T, THEN, b"", 0, 0)], n_actions=3,
               patch={60 + 2: 0}),                                               # rule 1 segment order
        V.simple(bytes([O.JMP, 3, 0, O.PUSHS, 1]) + T),                          # jump over code: unreachable
        V.simple(bytes([O.PUSHS, 1, O.JZ, 6, 0, O.PUSHS, 1])),                  # jump into an operand
        V.simple(bytes([O.PUSHS, 1, O.JZ, 0, 0]) + T),                          # backward
        V.simple(bytes([O.PUSHS, 1, O.JZ, 99, 0]) + T),                         # outside
        V.simple(bytes([O.PUSHS, 1, O.PUSHS, 1, O.JZ, 9, 0, O.PUSHS, 1, O.AND])),  # depth mismatch at join
        V.simple(bytes([O.ADD])),                                               # underflow
        V.simple(T * 17, max_stack=16),                                         # depth over 16
        V.simple(T + T + bytes([O.AND]), max_stack=1),                         # deeper than declared
        V.simple(T, then=bytes([O.PUSHS, 1, O.SETV, 0])),                       # SETV on a sensor
        V.simple(T, then=bytes([O.RON, 0])),                                    # RON on a sensor
        V.simple(bytes([O.ABSENT, 1, 0])),                                      # ABSENT on a relay
        V.simple(bytes([O.ABSENT, 0, 1])),                                      # duration 1500 ok -> accepted
        V.simple(bytes([O.ABSENT, 0, 9])),                                      # duration const out of range
        V.simple(bytes([O.AGG, 4, 0, 1]), windows=[(0, 4)]),                   # aggregate fn
        V.simple(bytes([O.AGG, 0, 1, 1]), windows=[(0, 4)]),                   # window index
        V.simple(bytes([O.AGG, 0, 0, 5]), windows=[(0, 4)]),                   # sample count
        V.simple(bytes([O.AGG, 0x80, 0, 0]), windows=[(0, 4)], consts=[0, 1]),  # duration 0
        V.simple(bytes([O.SYS, 2])),
        V.simple(bytes([O.RACT, 1])),
        V.simple(bytes([O.TOD, 0, 5])),
        V.simple(bytes([O.TOD, 0, 1]), consts=[-1, 5]),
        V.simple(bytes([O.LOAD, 0, O.PUSHK, 0, O.PUSHK, 1, O.HYS, 0, O.GT]), n_hyst=0, max_stack=3),
        V.prog(rules=[(0, V.COND_HOT, THEN, b"", 0, 0), (0, V.COND_HOT, V.ELSE, b"", 0, 0)], n_actions=2),
        V.simple(bytes([O.LOAD, 0, O.PUSHK, 0, O.PUSHK, 1, O.HYS, 0, 0x14]), n_hyst=1, max_stack=3),
        V.simple(T, then=bytes([O.EVENT, 9, 0])),
        V.simple(T, then=bytes([O.EVENT, 0, 4])),
        V.simple(T, then=bytes([O.IVAL, 0]), consts=[86400001]),
        V.simple(bytes([O.LOAD, 9])),
        V.simple(T, n_actions=0),
        asm(["r"], [], [(0, T, bytes([O.EVENT, 0, 0]), b"", 0, 0)], n_actions=1, max_stack=1, state=4),
    ]
    return out


def test_c_verifier_refuses_every_crafted_bad_program_with_the_same_reason(core: Core) -> None:
    import test_rules_verify as V

    seen: set[str] = set()
    blobs = [b for _, b, _ in V._cases()] + extra_bad_programs()
    for blob in blobs:
        try:
            pyverify.verify(blob)
        except pyverify.VerifyError as e:
            code, msg = c_reject(core, blob)
            assert msg == str(e)
            seen.add(core.code_name(code))
        else:
            core.verify(blob)  # accepted by both
    every = {core.code_name(c) for c in range(1, 67)}
    assert "?" not in every and len(every) == 66
    assert every - seen == set(), sorted(every - seen)


def test_refused_program_never_runs_in_the_c_vm(core: Core) -> None:
    import test_rules_verify as V

    lib = core.lib
    good = V.prog()
    prog = C.create_string_buffer(core.prog_size)
    work = C.create_string_buffer(core.work_size)
    err = VErr()
    st = (C.c_int32 * 64)()
    stack = (C.c_int32 * 17)()
    out = (C.c_int32 * 64)()

    def run(blob: bytes) -> int:
        return int(lib.fl_vm_run(prog, blob, len(blob), st, 64, stack, 17, out, 64, 0, NONE, 0, 1))

    assert lib.fl_verify(good, len(good), prog, work, C.byref(err)) == 0
    assert lib.fl_vm_init(prog, st, 64) == 0 and run(good) == 0
    for _, bad, _ in V._cases():
        assert lib.fl_verify(bad, len(bad), prog, work, C.byref(err)) != 0
        assert run(bad) < 0 and run(good) < 0  # the prog struct now holds a refusal: nothing runs
        assert lib.fl_vm_init(prog, st, 64) < 0
    other = bytearray(good)
    other[-1] ^= 1
    assert lib.fl_verify(good, len(good), prog, work, C.byref(err)) == 0
    assert run(bytes(other)) < 0  # not the verified blob


# ------------------------------------------------------------------ mutation fuzzer

def _seeds() -> list[bytes]:
    import test_rules_verify as V
    from test_rules_vm import _all_ops_blob

    bench = _load(ROOT / "bench" / "rules.py", "fl_native_bench_rules")
    return [V.prog(), _all_ops_blob(), bench.program(20), compile_file(FIX / "greenhouse.rules.yaml").program,
            V.simple(bytes([O.AGG, 0x83, 0, 0, O.PUSHK, 0, O.GT]), windows=[(0, 4)])]


def _mutate(rng: random.Random, blob: bytes) -> bytes:
    b = bytearray(blob)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(5)
        i = rng.randrange(len(b) + 1)
        if op <= 1 and i < len(b):
            b[i] = rng.randrange(256)
        elif op == 2 and i < len(b):
            b[i] ^= 1 << rng.randrange(8)
        elif op == 3:
            b[i:i] = bytes([rng.randrange(256)])
        elif i < len(b):
            del b[i]
    if rng.random() < 0.8 and len(b) >= 32:  # fix size and checksum to reach the deeper checks
        b = b[:-4] if rng.random() < 0.7 else b
        struct.pack_into("<I", b, 24, len(b) + 4)
        b += struct.pack("<I", pyverify.crc32(bytes(b)))
    return bytes(b)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mutation_fuzz_verifiers_agree_and_accepted_mutants_run_identically(core: Core, seed: int) -> None:
    rng = random.Random(seed)
    seeds = _seeds()
    accepted = refused = 0
    for it in range(1500):
        blob = _mutate(rng, seeds[it % len(seeds)])
        try:
            pyverify.verify(blob)
        except pyverify.VerifyError as e:
            code, msg = c_reject(core, blob)
            assert msg == str(e), blob.hex()
            refused += 1
            continue
        core.verify(blob)
        accepted += 1
        if lockstep.python_vm_clamps() or lockstep.model_blob(blob) is not None:
            tick_side_by_side(core, blob, 40, it)
    assert accepted > 50 and refused > 500, (accepted, refused)


# ------------------------------------------------------------------ number model, hand-computed

def _eval(core: Core, code: bytes, consts: list[int], inputs: tuple[int, int] = (NONE, NONE)) -> int:
    """Evaluate an expression as rule condition `code >= 0`... via SETV into a var: returns the var."""
    from test_rules_vm import asm

    blob = asm(["r", "a.x", "a.y", "var.out"],
               [(O.IN_SENSOR, 0xFF, 1), (O.IN_SENSOR, 0xFF, 2), (O.IN_VAR, 0xFF, 3)],
               [(0, bytes([O.PUSHS, 1]), code + bytes([O.SETV, 2]), b"", 0, 0)],
               consts=consts, max_stack=4, n_actions=0)
    vm = CVM(core.verify(blob))
    for i, v in enumerate(inputs):
        if v != NONE:
            vm.set_input(i, v, 0)
    vm.run(0)
    return vm.st[6] if vm.st[8] & 1 else NONE


@pytest.mark.parametrize("which", ["core", "core_softdiv"])
def test_number_model_saturation_and_none(request: pytest.FixtureRequest, which: str) -> None:
    core = request.getfixturevalue(which)
    L0, L1 = bytes([O.LOAD, 0]), bytes([O.LOAD, 1])

    def two(op: int, a: int, b: int) -> int:
        return _eval(core, L0 + L1 + bytes([op]), [], (a, b))

    assert two(O.ADD, 1500, 2250) == 3750
    assert two(O.SUB, 1500, 2250) == -750
    assert two(O.MUL, 1500, 2500) == 3750              # 1.5 * 2.5
    assert two(O.MUL, -1500, 1001) == -1501            # -1.5015 truncated toward zero
    assert two(O.DIV, 1000, 3000) == 333
    assert two(O.DIV, -1000, 3000) == -333
    assert two(O.DIV, 1000, 0) == NONE
    assert two(O.ADD, MAXV, 5) == MAXV
    assert two(O.SUB, -MAXV, 5) == -MAXV               # never reaches NONE (-2**30)
    assert two(O.MUL, -1000000000, 1000000) == -MAXV
    assert two(O.DIV, MAXV, 1) == MAXV                 # 2**30 * 1000 exceeds int32: int64 intermediate
    assert two(O.ADD, NONE, 5) == NONE
    # PUSHK clamps constants to the value range, NONE stays NONE; NEG saturates
    assert _eval(core, bytes([O.PUSHK, 0]), [0x7FFFFFFF]) == MAXV
    assert _eval(core, bytes([O.PUSHK, 0]), [-0x80000000]) == -MAXV
    assert _eval(core, bytes([O.PUSHK, 0]), [NONE]) == NONE
    assert _eval(core, bytes([O.PUSHK, 0, O.NEG]), [-0x80000000]) == MAXV
    assert _eval(core, bytes([O.PUSHK, 0, O.NEG]), [NONE]) == NONE
    assert _eval(core, bytes([O.PUSHK, 0, O.PUSHK, 1, O.GT]), [0x7FFFFFFF, MAXV]) == 0  # both MAXV
