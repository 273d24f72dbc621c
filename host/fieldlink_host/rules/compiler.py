"""Rules compiler: syntax tree (parser.py) + board -> verified bytecode program (docs/rules.md).

Checks, each reported at file:line:column: unknown sensor/quantity/relay for the board, undeclared
variables/flags/remote values, type errors (numbers vs booleans), limits (rules, window size, stack
depth, code/program/state size, durations), unreachable rules (always-false or contradictory
conditions, empty schedules) and conflicting actions on one relay without priorities.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from fieldlink.rules import opcodes as O
from fieldlink.rules.verify import VerifyError, crc32, verify

from fieldlink_host.boards import Board, load_board
from fieldlink_host.rules.parser import (
    Action,
    Binary,
    BoolLit,
    Call,
    Compare,
    Dur,
    Expr,
    Loc,
    Num,
    Ref,
    Rule,
    RuleFile,
    RulesError,
    Tod,
    Unary,
    parse_file,
    parse_text,
)
from fieldlink_host.rules.quantities import DEFAULT_SENSOR_INTERVAL_MS, quantities

NUM, BOOL = "number", "boolean"
CMP_OPS = {"<": O.LT, "<=": O.LE, ">": O.GT, ">=": O.GE, "==": O.EQ, "!=": O.NE}
ARITH_OPS = {"+": O.ADD, "-": O.SUB, "*": O.MUL, "/": O.DIV}
AGG_FNS = {"avg": O.AGG_AVG, "min": O.AGG_MIN, "max": O.AGG_MAX, "rate": O.AGG_RATE}
SYS_REFS = {"node.uptime": O.SYS_UPTIME, "time.of_day": O.SYS_TOD}


@dataclass
class InputDef:
    kind: int
    init: int | None = None
    interval_ms: int = DEFAULT_SENSOR_INTERVAL_MS


@dataclass
class Compiled:
    program: bytes
    rule_order: list[str]
    inputs: list[str]
    listing: list[str] = field(default_factory=list)


class Compiler:
    def __init__(self, rf: RuleFile, board: Board) -> None:
        self.rf = rf
        self.board = board
        self.catalog: dict[str, InputDef] = {}
        self.sensor_drivers = {str(s["name"]): str(s["driver"]) for s in board.sensors}
        for s in board.sensors:
            for q in quantities(str(s["driver"])):
                self.catalog[f"{s['name']}.{q}"] = InputDef(
                    O.IN_SENSOR, None, int(s.get("interval_ms", DEFAULT_SENSOR_INTERVAL_MS)))
        for r in board.relays:
            self.catalog[f"relay.{r['name']}"] = InputDef(O.IN_RELAY)
        for n, (b, _) in rf.flags.items():
            self.catalog[f"flag.{n}"] = InputDef(O.IN_FLAG, 1 if b else 0)
        for n, (v, _) in rf.vars.items():
            self.catalog[f"var.{n}"] = InputDef(O.IN_VAR, v)
        for n, (iv, _) in rf.remotes.items():
            self.catalog[f"remote.{n}"] = InputDef(O.IN_REMOTE, None, iv or DEFAULT_SENSOR_INTERVAL_MS)
        self.inputs: list[str] = []
        self.input_idx: dict[str, int] = {}
        self.consts: list[int] = []
        self.const_idx: dict[int, int] = {}
        self.strings: list[str] = []
        self.string_idx: dict[str, int] = {}
        self.windows: dict[int, int] = {}  # input index -> capacity, in first-use order
        self.n_hyst = 0
        self.code = bytearray()
        self.depth = 0
        self.max_depth = 0
        self.n_actions = 0

    # ------------------------------------------------------------------------------ tables
    def const(self, v: int, loc: Loc) -> int:
        if v not in self.const_idx:
            if len(self.consts) >= O.MAX_CONSTS:
                raise RulesError(loc, f"limit exceeded: more than {O.MAX_CONSTS} distinct constants")
            self.const_idx[v] = len(self.consts)
            self.consts.append(v)
        return self.const_idx[v]

    def string(self, s: str, loc: Loc) -> int:
        if s not in self.string_idx:
            if len(self.strings) >= O.MAX_STRINGS:
                raise RulesError(loc, f"limit exceeded: more than {O.MAX_STRINGS} distinct names")
            self.string_idx[s] = len(self.strings)
            self.strings.append(s)
        return self.string_idx[s]

    def resolve(self, name: str, loc: Loc) -> InputDef:
        d = self.catalog.get(name)
        if d is not None:
            return d
        head, _, tail = name.partition(".")
        b = self.board
        if not tail or "." in tail:
            raise RulesError(loc, f"unknown name {name!r} (inputs look like sensor.quantity, relay.NAME, "
                                  "flag.NAME, var.NAME, remote.NAME, node.uptime, time.of_day)")
        if head == "relay":
            raise RulesError(loc, f"unknown relay {tail!r} on board {b.name} "
                                  f"(relays: {', '.join(b.relay_names()) or 'none'})")
        if head in ("var", "flag", "remote"):
            section = {"var": "vars", "flag": "flags", "remote": "remote"}[head]
            raise RulesError(loc, f"undeclared {head} {tail!r} (declare it under '{section}:')")
        if head in ("node", "time"):
            raise RulesError(loc, f"unknown built-in {name!r} (node.uptime, time.of_day)")
        if head in self.sensor_drivers:
            drv = self.sensor_drivers[head]
            raise RulesError(loc, f"sensor {head!r} ({drv}) has no quantity {tail!r} "
                                  f"(has: {', '.join(quantities(drv))})")
        raise RulesError(loc, f"unknown sensor {head!r} for board {b.name} "
                              f"(sensors: {', '.join(b.sensor_names()) or 'none'})")

    def input(self, name: str, loc: Loc) -> int:
        d = self.resolve(name, loc)
        if name not in self.input_idx:
            if len(self.inputs) >= O.MAX_INPUTS:
                raise RulesError(loc, f"limit exceeded: more than {O.MAX_INPUTS} inputs")
            self.input_idx[name] = len(self.inputs)
            self.inputs.append(name)
            self.string(name, loc)
            if d.init is not None:
                self.const(d.init, loc)
        return self.input_idx[name]

    # ------------------------------------------------------------------------------ emit
    def emit(self, op: int, *operands: int) -> None:
        self.code.append(op)
        self.code.extend(operands)
        _, _, pops, pushes, _ = O.OPS[op]
        self.depth += pushes - pops
        self.max_depth = max(self.max_depth, self.depth)
        if op in O.OUTPUT_OPS:
            self.n_actions += 1

    def check_stack(self, loc: Loc) -> None:
        if self.max_depth > O.MAX_STACK:
            raise RulesError(loc, f"limit exceeded: expression needs stack depth {self.max_depth} "
                                  f"(limit {O.MAX_STACK})")

    # ------------------------------------------------------------------------------ expressions
    def gen(self, e: Expr) -> str:
        if isinstance(e, Num):
            self.emit(O.PUSHK, self.const(e.value, e.loc))
            return NUM
        if isinstance(e, BoolLit):
            self.emit(O.PUSHS, 1 if e.value else 0)
            return BOOL
        if isinstance(e, Dur | Tod):
            what = "a duration" if isinstance(e, Dur) else "a time of day"
            raise RulesError(e.loc, f"type error: {what} is only allowed as a function argument")
        if isinstance(e, Ref):
            if e.name in SYS_REFS:
                self.emit(O.SYS, SYS_REFS[e.name])
                return NUM
            i = self.input(e.name, e.loc)
            self.emit(O.LOAD, i)
            return BOOL if self.catalog[e.name].kind in (O.IN_RELAY, O.IN_FLAG) else NUM
        if isinstance(e, Unary):
            t = self.gen(e.arg)
            if e.op == "not":
                self.need(t, BOOL, e.loc, "'not'")
                self.emit(O.NOT)
                return BOOL
            self.need(t, NUM, e.loc, "'-'")
            self.emit(O.NEG)
            return NUM
        if isinstance(e, Binary):
            lt = self.gen(e.left)
            rt = self.gen(e.right)
            if e.op in ("and", "or"):
                self.need(lt, BOOL, e.loc, f"'{e.op}'")
                self.need(rt, BOOL, e.loc, f"'{e.op}'")
                self.emit(O.AND if e.op == "and" else O.OR)
                return BOOL
            self.need(lt, NUM, e.loc, f"'{e.op}'")
            self.need(rt, NUM, e.loc, f"'{e.op}'")
            self.emit(ARITH_OPS[e.op])
            return NUM
        if isinstance(e, Compare):
            return self.gen_compare(e)
        if isinstance(e, Call):
            return self.gen_call(e)
        raise RulesError(e.loc, "unsupported expression")  # pragma: no cover

    def need(self, got: str, want: str, loc: Loc, what: str) -> None:
        if got != want:
            raise RulesError(loc, f"type error: {what} needs {want}s, got a {got}")

    def gen_compare(self, e: Compare) -> str:
        lt = self.gen(e.left)
        rt = self.gen(e.right)
        if lt != rt:
            raise RulesError(e.loc, f"type error: cannot compare a {lt} with a {rt}")
        if lt == BOOL and e.op not in ("==", "!="):
            raise RulesError(e.loc, f"type error: '{e.op}' needs numbers, got booleans")
        if e.hyst is None:
            self.emit(CMP_OPS[e.op])
            return BOOL
        if e.op in ("==", "!="):
            raise RulesError(e.hyst.loc, "hysteresis needs <, <=, > or >=")
        h = fold(e.hyst)
        if not isinstance(h, Num) or h.value < 0:
            raise RulesError(e.hyst.loc, "type error: hysteresis must be a constant number >= 0")
        if self.n_hyst >= O.MAX_HYST:
            raise RulesError(e.loc, f"limit exceeded: more than {O.MAX_HYST} hysteresis comparisons")
        self.emit(O.PUSHK, self.const(h.value, h.loc))
        self.emit(O.HYS, self.n_hyst, CMP_OPS[e.op])
        self.n_hyst += 1
        return BOOL

    def window_input(self, e: Expr, fn: str) -> tuple[int, InputDef]:
        if not isinstance(e, Ref):
            raise RulesError(e.loc, f"{fn}() needs a sensor or remote value as first argument")
        if e.name in SYS_REFS:
            raise RulesError(e.loc, f"{fn}() needs a sensor or remote value, not {e.name}")
        d = self.resolve(e.name, e.loc)
        if d.kind not in (O.IN_SENSOR, O.IN_REMOTE):
            raise RulesError(e.loc, f"{fn}() needs a sensor or remote value, not {e.name}")
        return self.input(e.name, e.loc), d

    def gen_call(self, e: Call) -> str:
        fn, args = e.fn, e.args
        if fn in AGG_FNS:
            if len(args) != 2:
                raise RulesError(e.loc, f"{fn}(input, N or duration) takes 2 arguments")
            i, d = self.window_input(args[0], fn)
            w = args[1]
            lo = 2 if fn == "rate" else 1
            if isinstance(w, Dur):
                check_ms = w.ms
                if check_ms < 1 or check_ms > O.MAX_DURATION_MS:
                    raise RulesError(w.loc, "limit exceeded: window must be between 1 ms and 24h")
                cap = -(-w.ms // d.interval_ms) + 1
                why = f"a {w.ms} ms window at one sample per {d.interval_ms} ms needs {cap} samples"
                arg = self.const(w.ms, w.loc)
                fcode = AGG_FNS[fn] | O.AGG_TIME
            elif isinstance(w, Num) and w.value % O.SCALE == 0:
                cap = w.value // O.SCALE
                why = f"a window of {cap} samples"
                if cap < lo:
                    raise RulesError(w.loc, f"{fn}() needs a window of at least {lo} samples")
                arg = cap
                fcode = AGG_FNS[fn]
            else:
                raise RulesError(w.loc, f"{fn}() window must be a sample count (e.g. 10) or a duration (60s)")
            if cap > O.MAX_WINDOW:
                raise RulesError(w.loc, f"limit exceeded: {why} (max {O.MAX_WINDOW})")
            if i not in self.windows and len(self.windows) >= O.MAX_WINDOWS:
                raise RulesError(e.loc, f"limit exceeded: more than {O.MAX_WINDOWS} windowed inputs")
            self.windows[i] = max(self.windows.get(i, 0), cap)
            widx = list(self.windows).index(i)
            self.emit(O.AGG, fcode, widx, arg)
            return NUM
        if fn == "absent":
            if len(args) != 2 or not isinstance(args[1], Dur):
                raise RulesError(e.loc, "absent(input, duration) takes an input and a duration like 60s")
            i, _ = self.window_input(args[0], fn)
            ms = args[1].ms
            if ms < 1 or ms > O.MAX_DURATION_MS:
                raise RulesError(args[1].loc, "limit exceeded: duration must be between 1 ms and 24h")
            self.emit(O.ABSENT, i, self.const(ms, args[1].loc))
            return BOOL
        if fn == "between":
            if len(args) != 2 or not all(isinstance(a, Tod) for a in args):
                raise RulesError(e.loc, "between(HH:MM, HH:MM) takes two times of day")
            a, b = args[0], args[1]
            assert isinstance(a, Tod) and isinstance(b, Tod)
            self.emit(O.TOD, self.const(a.ms, a.loc), self.const(b.ms, b.loc))
            return BOOL
        raise RulesError(e.loc, f"unknown function {fn!r} (avg, min, max, rate, absent, between)")

    # ------------------------------------------------------------------------------ rules
    def relay_ops(self, rule: Rule) -> dict[str, set[str]]:
        ops: dict[str, set[str]] = {}
        for a in rule.then + rule.else_:
            if a.kind in ("on", "off", "pulse"):
                ops.setdefault(a.target, set()).add(a.kind)
        return ops

    def check_conflicts(self, rules: list[Rule]) -> None:
        seen: dict[str, list[tuple[Rule, set[str]]]] = {}
        for r in rules:
            for relay, ops in self.relay_ops(r).items():
                for other, oops in seen.get(relay, []):
                    if other.priority == r.priority and len(ops | oops) > 1:
                        loc = next(a.target_loc for a in r.then + r.else_
                                   if a.target == relay and a.kind in ("on", "off", "pulse"))
                        raise RulesError(loc or r.loc, f"conflicting actions on relay {relay!r} in rules "
                                                       f"{other.name!r} and {r.name!r} without priority "
                                                       "(give them different 'priority:' values)")
                seen.setdefault(relay, []).append((r, ops))

    def gen_actions(self, rule: Rule, actions: list[Action], order: list[Rule]) -> None:
        for a in actions:
            if a.kind in ("on", "off", "pulse"):
                name = f"relay.{a.target}"
                i = self.input(name, a.target_loc or a.loc)
                higher = [j for j, r in enumerate(order)
                          if r.priority > rule.priority and a.target in self.relay_ops(r)]
                patch = -1
                if higher:
                    for n, j in enumerate(higher):
                        self.emit(O.RACT, j)
                        if n:
                            self.emit(O.OR)
                    self.emit(O.JNZ, 0, 0)
                    patch = len(self.code) - 2
                if a.kind == "pulse":
                    self.emit(O.RPULSE, i, self.const(a.ms, a.loc))
                else:
                    self.emit(O.RON if a.kind == "on" else O.ROFF, i)
                if patch >= 0:
                    struct.pack_into("<H", self.code, patch, len(self.code))
            elif a.kind == "event":
                self.emit(O.EVENT, self.string(a.target, a.loc), a.severity)
            elif a.kind in ("interval", "sleep"):
                self.emit(O.IVAL if a.kind == "interval" else O.SLEEP, self.const(a.ms, a.loc))
            else:
                assert a.value is not None
                name = f"var.{a.target}"
                i = self.input(name, a.target_loc or a.loc)
                t = self.gen(fold(a.value))
                if t != NUM:
                    raise RulesError(a.value.loc, f"type error: variables hold numbers, got a {t}")
                self.emit(O.SETV, i)
            self.check_stack(a.loc)

    def compile(self) -> Compiled:
        rf = self.rf
        if len(rf.rules) > O.MAX_RULES:
            raise RulesError(rf.rules[O.MAX_RULES].loc, f"limit exceeded: more than {O.MAX_RULES} rules")
        order = sorted(rf.rules, key=lambda r: -r.priority)
        self.check_conflicts(order)
        table = []
        for r in order:
            cond = fold(r.when)
            check_reachable(r, cond)
            self.depth = 0
            t = self.gen(cond)
            if t != BOOL:
                raise RulesError(r.when.loc, f"type error: a condition must be a boolean, got a {t}")
            self.check_stack(r.when.loc)
            then = len(self.code)
            self.depth = 0
            self.gen_actions(r, r.then, order)
            els = len(self.code)
            self.gen_actions(r, r.else_, order)
            end = len(self.code)
            if end > O.MAX_CODE:
                raise RulesError(r.loc, f"limit exceeded: code is {end} bytes at this rule (max {O.MAX_CODE})")
            table.append((self.string(r.name, r.loc), then, els, end, r.for_ms, r.cooldown_ms))
        blob = self.assemble(table)
        where = rf.rules_loc or rf.loc
        if len(blob) > O.MAX_PROGRAM:
            raise RulesError(where, f"limit exceeded: program is {len(blob)} bytes (max {O.MAX_PROGRAM})")
        try:
            verify(blob)
        except VerifyError as exc:
            if "state size" in str(exc):
                raise RulesError(where, f"limit exceeded: {exc}") from None
            raise RulesError(where, f"internal error, compiled program rejected: {exc}") from None
        return Compiled(blob, [r.name for r in order], list(self.inputs), disassemble(blob))

    def assemble(self, table: list[tuple[int, int, int, int, int, int]]) -> bytes:
        ins = b""
        for n in self.inputs:
            d = self.catalog[n]
            init = O.NO_INIT if d.init is None else self.const_idx[d.init]
            ins += bytes([d.kind, init, self.string_idx[n], 0])
        wins = b"".join(bytes([i, cap]) for i, cap in self.windows.items())
        ks = b"".join(struct.pack("<i", k) for k in self.consts)
        rules = b"".join(struct.pack("<BBHHHii", name, 0, t, e, n, fo, co) for name, t, e, n, fo, co in table)
        strs = b"".join(bytes([len(s)]) + s.encode() for s in self.strings)
        state = (O.IN_WORDS * len(self.inputs) + O.RULE_WORDS * len(table) + self.n_hyst
                 + sum(O.WIN_HEAD + 2 * c for c in self.windows.values()))
        body = ins + wins + ks + rules + strs + bytes(self.code)
        total = O.HEADER_SIZE + len(body) + O.CRC_SIZE
        head = O.MAGIC + bytes([O.VERSION, 0, len(self.inputs), len(self.windows), len(self.consts), len(table),
                                len(self.strings), self.n_hyst])
        head += struct.pack("<HHHHHHI", len(self.code), len(strs), max(1, self.max_depth), state,
                            self.n_actions, 0, total)
        blob = head + body
        return blob + struct.pack("<I", crc32(blob))


# ---------------------------------------------------------------------------------- folding
def _sat(v: int) -> int:
    return int(O.saturate(v))


def fold(e: Expr) -> Expr:
    """Constant-fold literal sub-expressions with the VM's exact semantics."""
    if isinstance(e, Unary):
        a = fold(e.arg)
        if e.op == "not" and isinstance(a, BoolLit):
            return BoolLit(e.loc, not a.value)
        if e.op == "-" and isinstance(a, Num):
            return Num(e.loc, -a.value)
        return Unary(e.loc, e.op, a)
    if isinstance(e, Binary):
        a, b = fold(e.left), fold(e.right)
        if isinstance(a, BoolLit) and isinstance(b, BoolLit):
            return BoolLit(e.loc, (a.value and b.value) if e.op == "and" else (a.value or b.value))
        if e.op == "and" and (isinstance(a, BoolLit) and not a.value or isinstance(b, BoolLit) and not b.value):
            return BoolLit(e.loc, False)
        if isinstance(a, Num) and isinstance(b, Num) and e.op in ARITH_OPS:
            x, y = a.value, b.value
            if e.op == "+":
                return Num(e.loc, _sat(x + y))
            if e.op == "-":
                return Num(e.loc, _sat(x - y))
            if e.op == "*":
                p = x * y
                return Num(e.loc, _sat(p // O.SCALE if p >= 0 else -((-p) // O.SCALE)))
            if y == 0:
                raise RulesError(e.loc, "division by zero")
            q = abs(x * O.SCALE) // abs(y)
            return Num(e.loc, _sat(q if (x < 0) == (y < 0) or q == 0 else -q))
        return Binary(e.loc, e.op, a, b)
    if isinstance(e, Compare):
        a, b = fold(e.left), fold(e.right)
        if e.hyst is None and isinstance(a, Num | BoolLit) and isinstance(b, Num | BoolLit) \
                and type(a) is type(b) and (isinstance(a, Num) or e.op in ("==", "!=")):
            x, y = int(a.value), int(b.value)
            r = {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y, "==": x == y, "!=": x != y}[e.op]
            return BoolLit(e.loc, r)
        return Compare(e.loc, e.op, a, b, e.hyst)
    if isinstance(e, Call):
        return Call(e.loc, e.fn, [fold(a) for a in e.args])
    return e


def check_reachable(rule: Rule, cond: Expr) -> None:
    if isinstance(cond, BoolLit) and not cond.value:
        raise RulesError(rule.when.loc, f"unreachable rule {rule.name!r}: its condition is always false")
    terms: list[Expr] = []

    def flatten(e: Expr) -> None:
        if isinstance(e, Binary) and e.op == "and":
            flatten(e.left)
            flatten(e.right)
        else:
            terms.append(e)

    flatten(cond)
    bounds: dict[str, list[tuple[int, bool] | None]] = {}
    for t in terms:
        if isinstance(t, Call) and t.fn == "between" and len(t.args) == 2 \
                and all(isinstance(a, Tod) for a in t.args):
            a0, a1 = t.args
            assert isinstance(a0, Tod) and isinstance(a1, Tod)
            if a0.ms == a1.ms:
                raise RulesError(t.loc, f"unreachable rule {rule.name!r}: empty time window")
        if not isinstance(t, Compare) or t.hyst is not None:
            continue
        op, left, right = t.op, t.left, t.right
        if isinstance(left, Num) and isinstance(right, Ref):
            left, right = right, left
            op = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}[op]
        if not (isinstance(left, Ref) and isinstance(right, Num)) or op == "!=":
            continue
        lo_hi = bounds.setdefault(left.name, [None, None])
        v = right.value
        if op in (">", ">=", "=="):
            new = (v, op != ">")
            cur = lo_hi[0]
            if cur is None or new[0] > cur[0] or (new[0] == cur[0] and not new[1]):
                lo_hi[0] = new
        if op in ("<", "<=", "=="):
            new = (v, op != "<")
            cur = lo_hi[1]
            if cur is None or new[0] < cur[0] or (new[0] == cur[0] and not new[1]):
                lo_hi[1] = new
        lo, hi = lo_hi
        if lo is not None and hi is not None and (lo[0] > hi[0] or (lo[0] == hi[0] and not (lo[1] and hi[1]))):
            raise RulesError(t.loc, f"unreachable rule {rule.name!r}: the conditions on {left.name} "
                                    "can never all be true")


# ---------------------------------------------------------------------------------- listing
def disassemble(blob: bytes) -> list[str]:
    p = verify(blob)
    lines = [f"; {len(blob)} bytes, crc32 {p.crc:08x}, {len(p.rule_names)} rules, "
             f"{p.state_words} state words, stack {p.max_stack}"]
    for i, n in enumerate(p.input_names):
        k = p.input_kind[i]
        init = p.input_init[i]
        iv = "" if init == O.NO_INIT else f" = {O.format_fixed(p.consts[init]) if k not in (3, 4) else p.consts[init]}"
        lines.append(f"; input {i}: {O.INPUT_KINDS[k]} {n}{iv}")
    for w in range(len(p.win_input)):
        lines.append(f"; window {w}: {p.input_names[p.win_input[w]]} x{p.win_cap[w]}")
    code = p.code
    for r, name in enumerate(p.rule_names):
        c0, t, e, end = (p.rule_seg[4 * r + j] for j in range(4))
        lines.append(f"rule {r} {name} (for {p.rule_for[r]} ms, cooldown {p.rule_cool[r]} ms)")
        for label, s0, s1 in (("when", c0, t), ("then", t, e), ("else", e, end)):
            if s0 == s1:
                continue
            lines.append(f"  {label}:")
            pc = s0
            while pc < s1:
                name_, nops, *_ = O.OPS[code[pc]]
                ops = list(code[pc + 1:pc + 1 + nops])
                if code[pc] in (O.JMP, O.JZ, O.JNZ):
                    ops = [ops[0] | ops[1] << 8]
                lines.append(f"    {pc:4d}  {name_:7s} {' '.join(str(x) for x in ops)}".rstrip())
                pc += 1 + nops
    return lines


# ---------------------------------------------------------------------------------- entry points
def compile_rules(rf: RuleFile, board: str | Board | None = None) -> Compiled:
    """Compile a parsed rules file for a board (name, path, Board, or the file's own 'board:')."""
    if board is None:
        if rf.board is None:
            raise RulesError(rf.loc, "no board: give --board or a top-level 'board:' key")
        try:
            b = load_board(rf.board)
        except RulesError:
            raise
        except Exception as exc:  # FieldlinkError from boards
            raise RulesError(rf.board_loc or rf.loc, str(exc)) from None
    elif isinstance(board, Board):
        b = board
    else:
        b = load_board(board)
    try:
        return Compiler(rf, b).compile()
    except RecursionError:
        raise RulesError(rf.loc, "an expression is too long or nested too deeply to compile") from None


def compile_text(text: str, board: str | Board | None = None, path: str = "<rules>") -> Compiled:
    return compile_rules(parse_text(text, path), board)


def compile_file(path: str | Path, board: str | Board | None = None) -> Compiled:
    return compile_rules(parse_file(path), board)
