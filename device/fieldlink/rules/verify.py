# Rule program verifier: checks a program file completely before the VM may run it, and returns the
# parsed tables. Everything the VM later trusts without checking is checked here: header, sizes,
# checksum, limits, table contents, every operand and jump target, static stack depth, state size.
# A rejection raises VerifyError with a short reason; nothing is half-loaded.
import struct
from array import array

from fieldlink.rules import opcodes as O

try:
    from binascii import crc32 as _crc32
except ImportError:  # pragma: no cover - ports without binascii.crc32
    _crc32 = None


class VerifyError(ValueError):
    pass


def crc32(data):
    if _crc32 is not None:
        return _crc32(data) & 0xFFFFFFFF
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ (0xEDB88320 if c & 1 else 0)
    return c ^ 0xFFFFFFFF


class Program:
    """A verified program: tables as arrays, code as bytes, the state layout precomputed."""

    def __init__(self):
        self.raw = b""
        self.crc = 0
        self.strings = []
        self.input_kind = b""
        self.input_init = b""
        self.input_names = []
        self.win_input = b""
        self.win_cap = b""
        self.win_off = None
        self.consts = None
        self.rule_names = []
        self.rule_seg = None     # 4 per rule: cond, then, else, end
        self.rule_for = None
        self.rule_cool = None
        self.code = b""
        self.n_hyst = 0
        self.max_stack = 0
        self.state_words = 0
        self.n_actions = 0
        self.rule_off = 0
        self.hyst_off = 0


def _fail(msg):
    raise VerifyError(msg)


def _u16(b, o):
    return b[o] | (b[o + 1] << 8)


def verify(blob):
    """Verify a program (bytes-like); return a Program or raise VerifyError(reason)."""
    b = bytes(blob)
    n = len(b)
    if n < O.HEADER_SIZE + O.CRC_SIZE:
        _fail("program too short (%d bytes)" % n)
    if b[0:4] != O.MAGIC:
        _fail("bad magic")
    if b[4] != O.VERSION:
        _fail("unsupported version %d (expected %d)" % (b[4], O.VERSION))
    if b[5] != 0:
        _fail("unknown flags 0x%02x" % b[5])
    ni, nw, nk, nr, ns, nh = b[6], b[7], b[8], b[9], b[10], b[11]
    code_size = _u16(b, 12)
    str_size = _u16(b, 14)
    max_stack = _u16(b, 16)
    state_words = _u16(b, 18)
    n_actions = _u16(b, 20)
    if _u16(b, 22) != 0:
        _fail("reserved header field is not 0")
    total = struct.unpack_from("<I", b, 24)[0]
    if total != n:
        _fail("size field says %d bytes, program has %d" % (total, n))
    if n > O.MAX_PROGRAM:
        _fail("program size %d exceeds limit %d" % (n, O.MAX_PROGRAM))
    expect = O.HEADER_SIZE + 4 * ni + 2 * nw + 4 * nk + 16 * nr + str_size + code_size + O.CRC_SIZE
    if expect != n:
        _fail("section sizes add up to %d bytes, program has %d" % (expect, n))
    if struct.unpack_from("<I", b, n - 4)[0] != crc32(b[:n - 4]):
        _fail("checksum mismatch")
    if ni > O.MAX_INPUTS:
        _fail("too many inputs (%d > %d)" % (ni, O.MAX_INPUTS))
    if nw > O.MAX_WINDOWS:
        _fail("too many windows (%d > %d)" % (nw, O.MAX_WINDOWS))
    if nr == 0:
        _fail("program has no rules")
    if nr > O.MAX_RULES:
        _fail("too many rules (%d > %d)" % (nr, O.MAX_RULES))
    if code_size > O.MAX_CODE:
        _fail("code size %d exceeds limit %d" % (code_size, O.MAX_CODE))
    if max_stack < 1 or max_stack > O.MAX_STACK:
        _fail("declared stack depth %d outside 1..%d" % (max_stack, O.MAX_STACK))

    p = Program()
    p.raw = b
    p.crc = crc32(b[:n - 4])
    p.n_hyst = nh
    p.max_stack = max_stack
    p.n_actions = n_actions
    o = O.HEADER_SIZE
    in_at = o
    o += 4 * ni
    win_at = o
    o += 2 * nw
    k_at = o
    o += 4 * nk
    rule_at = o
    o += 16 * nr
    str_at = o
    o += str_size
    code_at = o

    # strings: ns entries of (len u8, printable ASCII)
    strings = []
    s = str_at
    end = str_at + str_size
    for _ in range(ns):
        if s >= end:
            _fail("string table shorter than its count")
        ln = b[s]
        if ln == 0 or s + 1 + ln > end:
            _fail("string %d has a bad length" % len(strings))
        for ch in b[s + 1:s + 1 + ln]:
            if ch < 0x21 or ch > 0x7E:
                _fail("string %d is not printable ASCII" % len(strings))
        strings.append(b[s + 1:s + 1 + ln].decode())
        s += 1 + ln
    if s != end:
        _fail("string table has trailing bytes")
    p.strings = strings

    consts = array("i", [struct.unpack_from("<i", b, k_at + 4 * j)[0] for j in range(nk)])
    p.consts = consts

    # inputs
    kinds = bytearray(ni)
    inits = bytearray(ni)
    names = []
    for j in range(ni):
        e = in_at + 4 * j
        kind, init, name, res = b[e], b[e + 1], b[e + 2], b[e + 3]
        if kind < O.IN_SENSOR or kind > O.IN_VAR:
            _fail("input %d has unknown kind %d" % (j, kind))
        if init != O.NO_INIT and init >= nk:
            _fail("input %d initial value: const %d out of range" % (j, init))
        if init != O.NO_INIT and kind in (O.IN_RELAY, O.IN_FLAG) and consts[init] not in (0, 1):
            _fail("input %d: boolean initial value must be 0 or 1" % j)
        if name >= ns:
            _fail("input %d name: string %d out of range" % (j, name))
        if res != 0:
            _fail("input %d reserved byte is not 0" % j)
        kinds[j] = kind
        inits[j] = init
        names.append(strings[name])
    p.input_kind = bytes(kinds)
    p.input_init = bytes(inits)
    p.input_names = names

    # state layout: inputs, rules, hysteresis cells, windows
    words = O.IN_WORDS * ni
    p.rule_off = words
    words += O.RULE_WORDS * nr
    p.hyst_off = words
    words += nh
    win_in = bytearray(nw)
    win_cap = bytearray(nw)
    win_off = array("i", [0] * nw) if nw else array("i")
    for j in range(nw):
        inp, cap = b[win_at + 2 * j], b[win_at + 2 * j + 1]
        if inp >= ni:
            _fail("window %d: input %d out of range" % (j, inp))
        if kinds[inp] not in (O.IN_SENSOR, O.IN_REMOTE):
            _fail("window %d: input %d is not a sensor or remote value" % (j, inp))
        if cap < 1 or cap > O.MAX_WINDOW:
            _fail("window %d: capacity %d outside 1..%d" % (j, cap, O.MAX_WINDOW))
        win_in[j] = inp
        win_cap[j] = cap
        win_off[j] = words
        words += O.WIN_HEAD + 2 * cap
    if words != state_words:
        _fail("state size field says %d words, layout needs %d" % (state_words, words))
    if words > O.MAX_STATE_WORDS:
        _fail("state size %d words exceeds limit %d" % (words, O.MAX_STATE_WORDS))
    p.state_words = words
    p.win_input = bytes(win_in)
    p.win_cap = bytes(win_cap)
    p.win_off = win_off

    # rules: name u8, reserved u8, then u16, else u16, end u16, for_ms i32, cooldown_ms i32
    seg = array("i", [0] * (4 * nr))
    rfor = array("i", [0] * nr)
    rcool = array("i", [0] * nr)
    rnames = []
    prev = 0
    for j in range(nr):
        e = rule_at + 16 * j
        if b[e] >= ns:
            _fail("rule %d name: string %d out of range" % (j, b[e]))
        if b[e + 1] != 0:
            _fail("rule %d reserved byte is not 0" % j)
        t, el, en = _u16(b, e + 2), _u16(b, e + 4), _u16(b, e + 6)
        fo, co = struct.unpack_from("<ii", b, e + 8)
        if not (prev < t <= el <= en <= code_size):
            _fail("rule %d: segments out of order or out of bounds" % j)
        if t == el and el == en:
            _fail("rule %d has no actions" % j)
        if fo < 0 or fo > O.MAX_DURATION_MS or co < 0 or co > O.MAX_DURATION_MS:
            _fail("rule %d: for/cooldown outside 0..%d ms" % (j, O.MAX_DURATION_MS))
        seg[4 * j] = prev
        seg[4 * j + 1] = t
        seg[4 * j + 2] = el
        seg[4 * j + 3] = en
        rfor[j] = fo
        rcool[j] = co
        rnames.append(strings[b[e]])
        prev = en
    if prev != code_size:
        _fail("rules cover %d of %d code bytes" % (prev, code_size))
    p.rule_names = rnames
    p.rule_seg = seg
    p.rule_for = rfor
    p.rule_cool = rcool
    code = b[code_at:code_at + code_size]
    p.code = code

    ctx = (code, consts, kinds, win_cap, ni, nk, nr, ns, nw, nh, bytearray(nh))
    deepest = 0
    actions = 0
    for j in range(nr):
        c0, t, el, en = seg[4 * j], seg[4 * j + 1], seg[4 * j + 2], seg[4 * j + 3]
        d, a = _check_segment(ctx, c0, t, False, 1, "rule %d condition" % j)
        deepest = max(deepest, d)
        for s0, s1, what in ((t, el, "then"), (el, en, "else")):
            if s0 < s1:
                d, a2 = _check_segment(ctx, s0, s1, True, 0, "rule %d %s" % (j, what))
                deepest = max(deepest, d)
                actions += a2
    if deepest > max_stack:
        _fail("stack depth %d exceeds declared %d" % (deepest, max_stack))
    if actions != n_actions:
        _fail("action count field says %d, code has %d" % (n_actions, actions))
    return p


def _check_segment(ctx, start, end, actions_ok, end_depth, where):
    """Walk one code segment: decode every instruction, check operands, jumps and stack depth.
    Returns (max depth, number of output actions)."""
    code, consts, kinds, win_cap, ni, nk, nr, ns, nw, nh, hyst_used = ctx
    depth_at = {start: 0}
    jumps = []  # jump targets in code order: the boundary check below must not follow dict order
    pc = start
    deepest = 0
    outputs = 0
    while pc < end:
        if pc not in depth_at:
            _fail("%s: unreachable code at %d" % (where, pc))
        d = depth_at[pc]
        op = code[pc]
        info = O.OPS.get(op)
        if info is None:
            _fail("%s: unknown opcode 0x%02x at %d" % (where, op, pc))
        name, nops, pops, pushes, is_action = info
        if pc + 1 + nops > end:
            _fail("%s: %s at %d runs past the end of its segment" % (where, name, pc))
        a = code[pc + 1] if nops >= 1 else 0
        a2 = code[pc + 2] if nops >= 2 else 0
        if is_action and not actions_ok:
            _fail("%s: action %s at %d in a condition" % (where, name, pc))
        if op == O.PUSHK:
            if a >= nk:
                _fail("%s: const %d out of range at %d" % (where, a, pc))
        elif op == O.PUSHS:
            if a > 1:
                _fail("%s: PUSHS value %d is not 0 or 1 at %d" % (where, a, pc))
        elif op == O.LOAD or op == O.SETV or op == O.RON or op == O.ROFF or op == O.RPULSE or op == O.ABSENT:
            if a >= ni:
                _fail("%s: input %d out of range at %d" % (where, a, pc))
            k = kinds[a]
            if op == O.SETV and k != O.IN_VAR:
                _fail("%s: SETV target %d is not a variable at %d" % (where, a, pc))
            if op in (O.RON, O.ROFF, O.RPULSE) and k != O.IN_RELAY:
                _fail("%s: %s target %d is not a relay at %d" % (where, name, a, pc))
            if op == O.ABSENT and k not in (O.IN_SENSOR, O.IN_REMOTE):
                _fail("%s: ABSENT input %d is not a sensor or remote value at %d" % (where, a, pc))
            if op == O.RPULSE or op == O.ABSENT:
                _duration(where, consts, nk, a2, pc, 1)
        elif op == O.AGG:
            fn, w, arg = a, a2, code[pc + 3]
            if (fn & 0x7F) > O.AGG_RATE:
                _fail("%s: unknown aggregate function %d at %d" % (where, fn, pc))
            if w >= nw:
                _fail("%s: window %d out of range at %d" % (where, w, pc))
            if fn & O.AGG_TIME:
                _duration(where, consts, nk, arg, pc, 1)
            elif arg < 1 or arg > win_cap[w]:
                _fail("%s: sample count %d outside 1..%d at %d" % (where, arg, win_cap[w], pc))
        elif op == O.SYS:
            if a >= O.N_SYS:
                _fail("%s: system register %d out of range at %d" % (where, a, pc))
        elif op == O.RACT:
            if a >= nr:
                _fail("%s: rule %d out of range at %d" % (where, a, pc))
        elif op == O.TOD:
            for k in (a, a2):
                if k >= nk:
                    _fail("%s: const %d out of range at %d" % (where, k, pc))
                if consts[k] < 0 or consts[k] >= O.DAY_MS:
                    _fail("%s: time of day %d outside 0..%d ms at %d" % (where, consts[k], O.DAY_MS - 1, pc))
        elif op == O.HYS:
            if a >= nh:
                _fail("%s: hysteresis cell %d out of range at %d" % (where, a, pc))
            if hyst_used[a]:
                _fail("%s: hysteresis cell %d used twice at %d" % (where, a, pc))
            hyst_used[a] = 1
            if a2 < O.LT or a2 > O.GE:
                _fail("%s: hysteresis comparison 0x%02x invalid at %d" % (where, a2, pc))
        elif op == O.EVENT:
            if a >= ns:
                _fail("%s: string %d out of range at %d" % (where, a, pc))
            if a2 >= len(O.SEVERITIES):
                _fail("%s: severity %d out of range at %d" % (where, a2, pc))
        elif op == O.IVAL or op == O.SLEEP:
            _duration(where, consts, nk, a, pc, 1)
        if d < pops:
            _fail("%s: stack underflow at %d" % (where, pc))
        d = d - pops + pushes
        if d > deepest:
            deepest = d
        if deepest > O.MAX_STACK:
            _fail("%s: stack depth exceeds %d at %d" % (where, O.MAX_STACK, pc))
        nxt = pc + 1 + nops
        if op in O.OUTPUT_OPS:
            outputs += 1
        if op == O.JMP or op == O.JZ or op == O.JNZ:
            target = a | (a2 << 8)
            if target < nxt:
                _fail("%s: backward jump at %d" % (where, pc))
            if target > end:
                _fail("%s: jump target %d outside its segment at %d" % (where, target, pc))
            _merge(where, depth_at, target, d)
            jumps.append(target)
            if op != O.JMP:
                _merge(where, depth_at, nxt, d)
        else:
            _merge(where, depth_at, nxt, d)
        pc = nxt
    # jump targets must land on instruction boundaries. With several bad targets the first JUMP in code
    # order names its target (as the C verifier does): iterating depth_at would follow dict order, which
    # is insertion order on CPython but hash order on MicroPython.
    for t in jumps:
        if t != end and not _visited(code, start, t):
            _fail("%s: jump into the middle of an instruction (%d)" % (where, t))
    if depth_at.get(end) != end_depth:  # the end is always recorded once the checks above passed
        _fail("%s: leaves %d values on the stack, expected %d" % (where, depth_at[end], end_depth))
    return deepest, outputs


def _visited(code, start, target):
    pc = start
    while pc < target:
        pc += 1 + O.OPS[code[pc]][1]
    return pc == target


def _merge(where, depth_at, pc, d):
    old = depth_at.get(pc)
    if old is None:
        depth_at[pc] = d
    elif old != d:
        _fail("%s: inconsistent stack depth at %d (%d vs %d)" % (where, pc, old, d))


def _duration(where, consts, nk, k, pc, lo):
    if k >= nk:
        _fail("%s: const %d out of range at %d" % (where, k, pc))
    v = consts[k]
    if v < lo or v > O.MAX_DURATION_MS:
        _fail("%s: duration %d outside %d..%d ms at %d" % (where, v, lo, O.MAX_DURATION_MS, pc))
