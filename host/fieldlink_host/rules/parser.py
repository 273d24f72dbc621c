"""Rules YAML -> syntax tree with file:line:column on every node.

The YAML is read with ``yaml.compose`` (nodes with marks, no type guessing: ``on``/``off`` stay strings),
and expressions such as ``sht.temperature > 28 hyst 1`` are tokenized with columns relative to the YAML
scalar they sit in. The language is specified in docs/rules.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from fieldlink.rules import opcodes as O

from fieldlink_host.errors import FieldlinkError
from fieldlink_host.fsio import check_yaml_depth, read_text


@dataclass(frozen=True)
class Loc:
    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class RulesError(FieldlinkError):
    """A rules problem at ``file:line:column``."""

    def __init__(self, loc: Loc, message: str) -> None:
        self.loc = loc
        super().__init__(message, where=str(loc))


# ------------------------------------------------------------------------------------ expressions
@dataclass
class Expr:
    loc: Loc


@dataclass
class Num(Expr):
    value: int  # fixed point


@dataclass
class BoolLit(Expr):
    value: bool


@dataclass
class Dur(Expr):
    ms: int


@dataclass
class Tod(Expr):
    ms: int


@dataclass
class Ref(Expr):
    name: str


@dataclass
class Unary(Expr):
    op: str  # "-" or "not"
    arg: Expr


@dataclass
class Binary(Expr):
    op: str  # + - * / and or
    left: Expr
    right: Expr


@dataclass
class Compare(Expr):
    op: str  # < <= > >= == !=
    left: Expr
    right: Expr
    hyst: Expr | None = None


@dataclass
class Call(Expr):
    fn: str
    args: list[Expr]


# ------------------------------------------------------------------------------------ documents
@dataclass
class Action:
    kind: str  # on off pulse event interval sleep set
    loc: Loc
    target: str = ""
    target_loc: Loc | None = None
    ms: int = 0
    severity: int = 0
    value: Expr | None = None


@dataclass
class Rule:
    name: str
    loc: Loc
    when: Expr
    then: list[Action]
    else_: list[Action]
    for_ms: int = 0
    cooldown_ms: int = 0
    priority: int = 0
    has_priority: bool = False


@dataclass
class RuleFile:
    path: str
    loc: Loc
    board: str | None = None
    board_loc: Loc | None = None
    vars: dict[str, tuple[int, Loc]] = field(default_factory=dict)
    flags: dict[str, tuple[bool, Loc]] = field(default_factory=dict)
    remotes: dict[str, tuple[int, Loc]] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    rules_loc: Loc | None = None


NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
TOP_KEYS = ("board", "vars", "flags", "remote", "rules")
RULE_KEYS = ("name", "when", "for", "cooldown", "priority", "then", "else")
TRUE = ("true", "yes", "on")
FALSE = ("false", "no", "off")


def _loc(path: str, node: yaml.Node) -> Loc:
    m = node.start_mark
    return Loc(path, m.line + 1, m.column + 1)


class _Doc:
    def __init__(self, path: str) -> None:
        self.path = path

    def loc(self, node: yaml.Node) -> Loc:
        return _loc(self.path, node)

    def mapping(self, node: yaml.Node, what: str, allowed: tuple[str, ...] | None = None,
                ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise RulesError(self.loc(node), f"{what} must be a mapping")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                raise RulesError(self.loc(k), f"{what}: keys must be plain names")
            key = str(k.value)
            if key in out:
                raise RulesError(self.loc(k), f"duplicate key {key!r} in {what}")
            if allowed is not None and key not in allowed:
                raise RulesError(self.loc(k), f"unknown key {key!r} in {what} (allowed: {', '.join(allowed)})")
            out[key] = (k, v)
        return out

    def scalar(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise RulesError(self.loc(node), f"{what} must be a single value")
        return str(node.value)

    def name(self, node: yaml.Node, what: str) -> str:
        s = self.scalar(node, what)
        if not NAME_RE.match(s) or len(s) > 40:
            raise RulesError(self.loc(node), f"{what} {s!r} is not a valid name (letters, digits, _; max 40)")
        return s

    def number(self, node: yaml.Node, what: str) -> int:
        s = self.scalar(node, what)
        try:
            return int(O.parse_fixed(s))
        except ValueError:
            raise RulesError(self.loc(node), f"{what} must be a number, got {s!r}") from None

    def integer(self, node: yaml.Node, what: str, lo: int, hi: int) -> int:
        s = self.scalar(node, what)
        try:
            v = int(s, 10)
        except ValueError:
            raise RulesError(self.loc(node), f"{what} must be an integer, got {s!r}") from None
        if not lo <= v <= hi:
            raise RulesError(self.loc(node), f"{what} must be in {lo}..{hi}, got {v}")
        return v

    def boolean(self, node: yaml.Node, what: str) -> bool:
        s = self.scalar(node, what).lower()
        if s in TRUE:
            return True
        if s in FALSE:
            return False
        raise RulesError(self.loc(node), f"{what} must be true or false, got {s!r}")

    def duration(self, node: yaml.Node, what: str, lo: int = 0) -> int:
        s = self.scalar(node, what).strip()
        ms = parse_duration(s)
        if ms is None:
            raise RulesError(self.loc(node), f"{what} must be a duration like 500ms, 30s, 5m, 2h, got {s!r}")
        return check_duration(ms, self.loc(node), what, lo)


def parse_duration(s: str) -> int | None:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", s)
    if not m:
        return None
    fixed = int(O.parse_fixed(m.group(1)))  # number * 1000
    total = fixed * UNITS_MS[m.group(2)]
    if total % 1000:
        return None
    return total // 1000


def check_duration(ms: int, loc: Loc, what: str, lo: int = 0) -> int:
    if ms < lo or ms > O.MAX_DURATION_MS:
        raise RulesError(loc, f"limit exceeded: {what} must be between {lo} ms and 24h, got {ms} ms")
    return ms


# ------------------------------------------------------------------------------------ tokenizer
TOKEN_RE = re.compile(
    r"\s*(?:(?P<tod>\d{1,2}:\d{2}(?::\d{2})?)"
    r"|(?P<num>\d+(?:\.\d+)?[A-Za-z_]*)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
    r"|(?P<op><=|>=|==|!=|<|>|\+|-|\*|/|\(|\)|,))"
)
KEYWORDS = ("and", "or", "not", "hyst", "true", "false")


@dataclass
class Tok:
    kind: str  # tod num dur name op kw end
    text: str
    loc: Loc
    value: int = 0


#: deepest nesting of parentheses/calls/unary operators in one expression
MAX_NESTING = 32
#: longest expression text (characters); a longer one cannot fit the VM's program limits anyway
MAX_EXPR_CHARS = 4000


class ExprParser:
    def __init__(self, text: str, locate: object) -> None:
        self.text = text
        self.locate = locate  # callable(offset) -> Loc
        self.toks = self._tokenize()
        self.i = 0
        self.depth = 0

    def _nest(self, loc: Loc) -> None:
        """Parentheses, calls, unary minus and 'not' nest; the VM's stack is 16 deep, so anything
        deeper than MAX_NESTING could never run and would only exhaust Python's recursion."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise RulesError(loc, f"expression nested more than {MAX_NESTING} levels deep")

    def _at(self, off: int) -> Loc:
        return self.locate(off)  # type: ignore[operator,no-any-return]

    def _tokenize(self) -> list[Tok]:
        out: list[Tok] = []
        pos = 0
        text = self.text
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                out.append(Tok("end", "", self._at(pos)))
                return out
            m = TOKEN_RE.match(text, pos)
            if not m or m.end() == pos:
                raise RulesError(self._at(pos), f"unexpected character {text[pos]!r}")
            kind = m.lastgroup or ""
            s = m.group(kind)
            start = m.start(kind)
            loc = self._at(start)
            if kind == "tod":
                parts = [int(p) for p in s.split(":")]
                h, mi, se = parts[0], parts[1], parts[2] if len(parts) > 2 else 0
                if h > 23 or mi > 59 or se > 59:
                    raise RulesError(loc, f"bad time of day {s!r}")
                out.append(Tok("tod", s, loc, ((h * 60 + mi) * 60 + se) * 1000))
            elif kind == "num":
                mnum = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z_]*)", s)
                assert mnum
                if mnum.group(2):
                    ms = parse_duration(s)
                    if ms is None:
                        raise RulesError(loc, f"bad number or duration {s!r} (units: ms, s, m, h, d)")
                    out.append(Tok("dur", s, loc, ms))
                else:
                    out.append(Tok("num", s, loc, int(O.parse_fixed(s))))
            elif kind == "name":
                out.append(Tok("kw" if s in KEYWORDS else "name", s, loc))
            else:
                out.append(Tok("op", s, loc))
            pos = m.end()

    def peek(self) -> Tok:
        return self.toks[self.i]

    def take(self) -> Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def accept(self, text: str) -> Tok | None:
        t = self.peek()
        if t.kind in ("op", "kw") and t.text == text:
            self.i += 1
            return t
        return None

    def expect(self, text: str) -> Tok:
        t = self.accept(text)
        if t is None:
            got = self.peek()
            raise RulesError(got.loc, f"expected {text!r}, got {got.text or 'end of expression'!r}")
        return t

    def parse(self) -> Expr:
        e = self.or_()
        t = self.peek()
        if t.kind != "end":
            raise RulesError(t.loc, f"unexpected {t.text!r}")
        return e

    def or_(self) -> Expr:
        self._nest(self.peek().loc)
        e = self.and_()
        while (t := self.accept("or")) is not None:
            e = Binary(t.loc, "or", e, self.and_())
        self.depth -= 1
        return e

    def and_(self) -> Expr:
        e = self.not_()
        while (t := self.accept("and")) is not None:
            e = Binary(t.loc, "and", e, self.not_())
        return e

    def not_(self) -> Expr:
        t = self.accept("not")
        if t is not None:
            self._nest(t.loc)
            e: Expr = Unary(t.loc, "not", self.not_())
            self.depth -= 1
            return e
        return self.cmp()

    def cmp(self) -> Expr:
        left = self.sum()
        t = self.peek()
        if t.kind == "op" and t.text in ("<", "<=", ">", ">=", "==", "!="):
            self.i += 1
            right = self.sum()
            hyst = None
            if self.accept("hyst") is not None:
                hyst = self.sum()
            nxt = self.peek()
            if nxt.kind == "op" and nxt.text in ("<", "<=", ">", ">=", "==", "!="):
                raise RulesError(nxt.loc, "comparisons cannot be chained; use 'and'")
            return Compare(t.loc, t.text, left, right, hyst)
        return left

    def sum(self) -> Expr:
        e = self.term()
        while True:
            t = self.peek()
            if t.kind == "op" and t.text in ("+", "-"):
                self.i += 1
                e = Binary(t.loc, t.text, e, self.term())
            else:
                return e

    def term(self) -> Expr:
        e = self.unary()
        while True:
            t = self.peek()
            if t.kind == "op" and t.text in ("*", "/"):
                self.i += 1
                e = Binary(t.loc, t.text, e, self.unary())
            else:
                return e

    def unary(self) -> Expr:
        t = self.accept("-")
        if t is not None:
            self._nest(t.loc)
            e: Expr = Unary(t.loc, "-", self.unary())
            self.depth -= 1
            return e
        return self.primary()

    def primary(self) -> Expr:
        t = self.take()
        if t.kind == "num":
            return Num(t.loc, t.value)
        if t.kind == "dur":
            return Dur(t.loc, t.value)
        if t.kind == "tod":
            return Tod(t.loc, t.value)
        if t.kind == "kw" and t.text in ("true", "false"):
            return BoolLit(t.loc, t.text == "true")
        if t.kind == "name":
            if self.accept("(") is not None:
                args: list[Expr] = []
                if self.accept(")") is None:
                    args.append(self.or_())
                    while self.accept(",") is not None:
                        args.append(self.or_())
                    self.expect(")")
                return Call(t.loc, t.text, args)
            return Ref(t.loc, t.text)
        if t.kind == "op" and t.text == "(":
            e = self.or_()
            self.expect(")")
            return e
        raise RulesError(t.loc, f"expected a value, got {t.text or 'end of expression'!r}")


# ------------------------------------------------------------------------------------ documents
SEVERITY_NAMES = {name: i for i, name in enumerate(O.SEVERITIES)}


class RulesParser(_Doc):
    def expr(self, node: yaml.Node, what: str) -> Expr:
        if not isinstance(node, yaml.ScalarNode):
            raise RulesError(self.loc(node), f"{what} must be an expression string")
        text = str(node.value)
        if len(text) > MAX_EXPR_CHARS:
            raise RulesError(self.loc(node), f"{what} is longer than {MAX_EXPR_CHARS} characters")
        sm, em = node.start_mark, node.end_mark
        style = node.style
        exact = sm.line == em.line and style in (None, "", '"', "'") and "\\" not in text
        base_col = sm.column + (1 if style in ('"', "'") else 0)

        def locate(off: int) -> Loc:
            if exact:
                return Loc(self.path, sm.line + 1, base_col + off + 1)
            return Loc(self.path, sm.line + 1, sm.column + 1)

        if not text.strip():
            raise RulesError(self.loc(node), f"{what} is empty")
        return ExprParser(text, locate).parse()

    def parse(self, root: yaml.Node | None) -> RuleFile:
        top_loc = Loc(self.path, 1, 1)
        if root is None:
            raise RulesError(top_loc, "empty rules file")
        rf = RuleFile(self.path, self.loc(root))
        top = self.mapping(root, "rules file", TOP_KEYS)
        if "board" in top:
            rf.board = self.scalar(top["board"][1], "board")
            rf.board_loc = self.loc(top["board"][1])
        names: set[str] = set()
        if "vars" in top:
            for _key, (kn, vn) in self.mapping(top["vars"][1], "vars").items():
                n = self.name(kn, "variable")
                rf.vars[n] = (self.number(vn, f"initial value of var.{n}"), self.loc(kn))
        if "flags" in top:
            for _key, (kn, vn) in self.mapping(top["flags"][1], "flags").items():
                n = self.name(kn, "flag")
                rf.flags[n] = (self.boolean(vn, f"default of flag.{n}"), self.loc(kn))
        if "remote" in top:
            for _key, (kn, vn) in self.mapping(top["remote"][1], "remote").items():
                n = self.name(kn, "remote value")
                iv = 0
                if not (isinstance(vn, yaml.ScalarNode) and vn.value in ("", "~", "null")):
                    iv = self.duration(vn, f"expected interval of remote.{n}", 100)
                rf.remotes[n] = (iv, self.loc(kn))
        if "rules" not in top:
            raise RulesError(rf.loc, "missing 'rules' list")
        rules_node = top["rules"][1]
        rf.rules_loc = self.loc(top["rules"][0])
        if not isinstance(rules_node, yaml.SequenceNode) or not rules_node.value:
            raise RulesError(self.loc(rules_node), "'rules' must be a non-empty list")
        for rn in rules_node.value:
            rule = self.rule(rn)
            if rule.name in names:
                raise RulesError(rule.loc, f"duplicate rule name {rule.name!r}")
            names.add(rule.name)
            rf.rules.append(rule)
        return rf

    def rule(self, node: yaml.Node) -> Rule:
        m = self.mapping(node, "rule", RULE_KEYS)
        loc = self.loc(node)
        for req in ("name", "when", "then"):
            if req not in m:
                raise RulesError(loc, f"rule needs a {req!r} key")
        name = self.name(m["name"][1], "rule name")
        when = self.expr(m["when"][1], "condition")
        rule = Rule(name, self.loc(m["name"][1]), when, self.actions(m["then"][1]),
                    self.actions(m["else"][1]) if "else" in m else [])
        if "for" in m:
            rule.for_ms = self.duration(m["for"][1], "'for'")
        if "cooldown" in m:
            rule.cooldown_ms = self.duration(m["cooldown"][1], "cooldown")
        if "priority" in m:
            rule.priority = self.integer(m["priority"][1], "priority", -1000, 1000)
            rule.has_priority = True
        return rule

    def actions(self, node: yaml.Node) -> list[Action]:
        if isinstance(node, yaml.MappingNode):
            items = [node]
        elif isinstance(node, yaml.SequenceNode):
            items = list(node.value)
        else:
            raise RulesError(self.loc(node), "actions must be a list of mappings like '- on: fan'")
        out = [self.action(a) for a in items]
        if not out and isinstance(node, yaml.SequenceNode):
            raise RulesError(self.loc(node), "empty action list")
        return out

    def action(self, node: yaml.Node) -> Action:
        m = self.mapping(node, "action")
        loc = self.loc(node)
        kinds = [k for k in ("on", "off", "pulse", "event", "interval", "sleep", "set") if k in m]
        if len(kinds) != 1:
            raise RulesError(loc, "an action needs exactly one of on, off, pulse, event, interval, sleep, set")
        kind = kinds[0]
        extra = {"pulse": ("ms",), "event": ("severity",), "set": ("value",)}.get(kind, ())
        for k in m:
            if k != kind and k not in extra:
                raise RulesError(self.loc(m[k][0]), f"unknown key {k!r} in a {kind!r} action")
        kn, vn = m[kind]
        a = Action(kind, self.loc(kn))
        if kind in ("on", "off", "pulse", "event", "set"):
            a.target = self.name(vn, "relay" if kind in ("on", "off", "pulse") else
                                 "event name" if kind == "event" else "variable")
            a.target_loc = self.loc(vn)
        if kind == "pulse":
            if "ms" not in m:
                raise RulesError(loc, "pulse needs 'ms' (pulse length, e.g. 'ms: 3000' or '3s')")
            msn = m["ms"][1]
            s = self.scalar(msn, "ms")
            a.ms = check_duration(int(s), self.loc(msn), "pulse length", 1) if s.isdigit() else \
                self.duration(msn, "pulse length", 1)
        elif kind == "event":
            if "severity" in m:
                sn = m["severity"][1]
                sev = self.scalar(sn, "severity")
                if sev not in SEVERITY_NAMES:
                    raise RulesError(self.loc(sn), f"severity must be one of {', '.join(O.SEVERITIES)}, got {sev!r}")
                a.severity = SEVERITY_NAMES[sev]
        elif kind in ("interval", "sleep"):
            a.ms = self.duration(vn, "sampling interval" if kind == "interval" else "sleep time", 100)
        elif kind == "set":
            if "value" not in m:
                raise RulesError(loc, "set needs 'value' (an expression)")
            a.value = self.expr(m["value"][1], "value")
        return a


def parse_text(text: str, path: str = "<rules>") -> RuleFile:
    check_yaml_depth(text, path)
    try:
        root = yaml.compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Loc(path, mark.line + 1, mark.column + 1) if mark else Loc(path, 1, 1)
        raise RulesError(loc, f"invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise RulesError(Loc(path, 1, 1), f"invalid YAML: {exc}") from None
    try:
        return RulesParser(path).parse(root)
    except RecursionError:
        raise RulesError(Loc(path, 1, 1), "rules nested too deeply") from None


def parse_file(path: str | Path) -> RuleFile:
    p = Path(path)
    return parse_text(read_text(p, "rules file", limit=1 << 20), str(p))
