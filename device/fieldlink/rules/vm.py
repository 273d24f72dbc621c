# The reference rule VM (pure Python, MicroPython and CPython). It runs a verified Program (verify.py)
# and trusts everything the verifier checked. All state lives in preallocated int32 arrays:
#   st    program state (inputs, rules, hysteresis cells, windows; layout in docs/rules.md)
#   stack evaluation stack (max_stack words)
#   out   actions of the current tick, 4 words each: kind, operand, arg, rule index
# run() allocates nothing on the heap (tested with micropython.heap_lock on the unix port), provided
# values stay small ints (always true on 64-bit ports; see docs/rules.md for 32-bit MUL/DIV/rate/avg).
# Number model (docs/rules.md "Numbers"): every value is NONE or in [-MAXV, MAXV]; PUSHK, initial
# values, SYS and every arithmetic/aggregate result saturate into that range, so no value ever wraps
# in the int32 arrays (CPython would raise OverflowError, MicroPython would wrap silently).
from array import array

from fieldlink.rules import opcodes as O

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_MASK = const(0x3FFFFFFF)
_HALF = const(0x20000000)
_PERIOD = const(0x40000000)
_MAXV = const(0x3FFFFFFF)
_NONE = const(-0x40000000)
_SCALE = const(1000)
_MAXDUR = const(86400000)


def _sat(v):
    """NONE stays NONE; anything else is saturated to [-MAXV, MAXV]."""
    if v == _NONE:
        return v
    if v > _MAXV:
        return _MAXV
    if v < -_MAXV:
        return -_MAXV
    return v


def _zeros(n):
    return array("i", bytes(4 * n))


class VM:
    def __init__(self, prog):
        self.p = prog
        self.code = prog.code
        self.k = prog.consts
        self.kinds = prog.input_kind
        self.seg = prog.rule_seg
        self.rfor = prog.rule_for
        self.rcool = prog.rule_cool
        self.win_in = prog.win_input
        self.win_cap = prog.win_cap
        self.win_off = prog.win_off
        self.n_in = len(prog.input_kind)
        self.n_rules = len(prog.rule_names)
        self.n_win = len(prog.win_input)
        self.rule_off = prog.rule_off
        self.hyst_off = prog.hyst_off
        self.st = _zeros(prog.state_words)
        self.stack = _zeros(prog.max_stack + 1)
        self.out = _zeros(4 * (prog.n_actions + 1))
        self.cur_rule = 0
        self.n_out = 0
        self.now = 0
        self.tod = _NONE
        self.uptime = 0
        self.started = False
        st = self.st
        for i in range(self.n_in):
            init = prog.input_init[i]
            if init != O.NO_INIT:
                v = _sat(prog.consts[init])
                st[3 * i] = v
                st[3 * i + 2] = 0 if v == _NONE else O.F_VALID

    def set_input(self, i, value, now):
        """Store a new fixed-point reading for input i taken at now (ms); marks it fresh."""
        st = self.st
        o = 3 * i
        if value > _MAXV:
            value = _MAXV
        elif value < -_MAXV:
            value = -_MAXV
        st[o] = value
        st[o + 1] = now & _MASK
        st[o + 2] = O.F_VALID | O.F_FRESH

    def get_input(self, i):
        return self.st[3 * i] if self.st[3 * i + 2] & O.F_VALID else _NONE

    def run(self, now, tod=_NONE, uptime=0):
        """One tick: push fresh readings into windows, evaluate every rule in order, fill `out`.
        Returns the number of actions (entries of 4 words in self.out)."""
        now &= _MASK
        self.now = now
        self.tod = _sat(tod)
        self.uptime = 0 if uptime < 0 else (uptime if uptime < _MAXV else _MAXV)
        st = self.st
        n_in = self.n_in
        first = not self.started
        self.started = True
        i = 0
        while i < n_in:
            o = 3 * i
            fl = st[o + 2]
            if first and not fl & O.F_VALID:
                st[o + 1] = now
            elif not fl & O.F_FRESH:
                age = (now - st[o + 1]) & _MASK
                if age >= _HALF or age > _MAXDUR:
                    # quiet for over 24 h: clamp the age so it never wraps, forget old samples
                    st[o + 1] = (now - _MAXDUR) & _MASK
                    w = 0
                    while w < self.n_win:
                        if self.win_in[w] == i:
                            st[self.win_off[w] + 1] = 0
                        w += 1
            i += 1
        w = 0
        while w < self.n_win:
            o = 3 * self.win_in[w]
            if st[o + 2] & O.F_FRESH:
                wo = self.win_off[w]
                cap = self.win_cap[w]
                head = st[wo]
                st[wo + 2 + 2 * head] = st[o]
                st[wo + 3 + 2 * head] = st[o + 1]
                head += 1
                st[wo] = 0 if head == cap else head
                if st[wo + 1] < cap:
                    st[wo + 1] += 1
            w += 1
        self.n_out = 0
        seg = self.seg
        r = 0
        while r < self.n_rules:
            self.cur_rule = r
            c = self._exec(seg[4 * r], seg[4 * r + 1])
            ro = self.rule_off + 3 * r
            fl = st[ro]
            if fl & O.R_FIRED:
                cd = (now - st[ro + 2]) & _MASK
                if cd < _HALF and cd >= self.rcool[r]:
                    fl &= ~O.R_FIRED
            held = False
            if c > 0:
                if not fl & O.R_HOLDING:
                    fl |= O.R_HOLDING
                    st[ro + 1] = now
                fo = self.rfor[r]
                d = (now - st[ro + 1]) & _MASK
                if d < _HALF and d >= fo:
                    held = True
                    st[ro + 1] = (now - fo) & _MASK
            else:
                fl &= ~O.R_HOLDING
            if held:
                if not fl & (O.R_ACTIVE | O.R_FIRED):
                    fl |= O.R_ACTIVE
                    if self.rcool[r] > 0:
                        fl |= O.R_FIRED
                    st[ro + 2] = now
                    st[ro] = fl
                    self._exec(seg[4 * r + 1], seg[4 * r + 2])
            elif fl & O.R_ACTIVE:
                fl &= ~O.R_ACTIVE
                st[ro] = fl
                self._exec(seg[4 * r + 2], seg[4 * r + 3])
            st[ro] = fl
            r += 1
        i = 0
        while i < n_in:
            st[3 * i + 2] &= ~O.F_FRESH
            i += 1
        return self.n_out

    def _emit(self, kind, operand, arg):
        o = 4 * self.n_out
        out = self.out
        out[o] = kind
        out[o + 1] = operand
        out[o + 2] = arg
        out[o + 3] = self.cur_rule
        self.n_out += 1

    def _exec(self, pc, end):
        """Run code[pc:end]; return the value left on top of the stack (0 if none)."""
        code = self.code
        k = self.k
        st = self.st
        s = self.stack
        sp = 0
        while pc < end:
            op = code[pc]
            if op == 0x03:  # LOAD
                o = 3 * code[pc + 1]
                s[sp] = st[o] if st[o + 2] & 1 else _NONE
                sp += 1
                pc += 2
            elif op == 0x01:  # PUSHK: the constant saturated (NONE stays NONE)
                v = k[code[pc + 1]]
                if v != _NONE:
                    if v > _MAXV:
                        v = _MAXV
                    elif v < -_MAXV:
                        v = -_MAXV
                s[sp] = v
                sp += 1
                pc += 2
            elif op == 0x02:  # PUSHS
                s[sp] = code[pc + 1]
                sp += 1
                pc += 2
            elif op <= 0x15 and op >= 0x10:  # LT LE GT GE EQ NE
                sp -= 1
                b = s[sp]
                a = s[sp - 1]
                if a == _NONE or b == _NONE:
                    v = 0
                elif op == 0x10:
                    v = a < b
                elif op == 0x11:
                    v = a <= b
                elif op == 0x12:
                    v = a > b
                elif op == 0x13:
                    v = a >= b
                elif op == 0x14:
                    v = a == b
                else:
                    v = a != b
                s[sp - 1] = 1 if v else 0
                pc += 1
            elif op == 0x18:  # AND
                sp -= 1
                s[sp - 1] = 1 if (s[sp - 1] > 0 and s[sp] > 0) else 0
                pc += 1
            elif op == 0x19:  # OR
                sp -= 1
                s[sp - 1] = 1 if (s[sp - 1] > 0 or s[sp] > 0) else 0
                pc += 1
            elif op == 0x1A:  # NOT
                s[sp - 1] = 0 if s[sp - 1] > 0 else 1
                pc += 1
            elif op == 0x16:  # HYS cell cmp
                sp -= 2
                h = s[sp + 1]
                t = s[sp]
                x = s[sp - 1]
                cell = self.hyst_off + code[pc + 1]
                cmp = code[pc + 2]
                if x == _NONE or t == _NONE or h == _NONE:
                    v = 0
                else:
                    if st[cell]:
                        t = t - h if cmp >= 0x12 else t + h
                    if cmp == 0x10:
                        v = 1 if x < t else 0
                    elif cmp == 0x11:
                        v = 1 if x <= t else 0
                    elif cmp == 0x12:
                        v = 1 if x > t else 0
                    else:
                        v = 1 if x >= t else 0
                st[cell] = v
                s[sp - 1] = v
                pc += 3
            elif op == 0x05:  # AGG fn w arg
                s[sp] = self._agg(code[pc + 1], code[pc + 2], code[pc + 3])
                sp += 1
                pc += 4
            elif op == 0x04:  # ABSENT i k
                age = (self.now - st[3 * code[pc + 1] + 1]) & _MASK
                s[sp] = 1 if (age < _HALF and age >= k[code[pc + 2]]) else 0
                sp += 1
                pc += 3
            elif op >= 0x20 and op <= 0x24:  # ADD SUB MUL DIV NEG
                if op == 0x24:
                    a = s[sp - 1]
                    s[sp - 1] = a if a == _NONE else -a
                    pc += 1
                    continue
                sp -= 1
                b = s[sp]
                a = s[sp - 1]
                if a == _NONE or b == _NONE:
                    v = _NONE
                elif op == 0x20:
                    v = a + b
                elif op == 0x21:
                    v = a - b
                elif op == 0x22:
                    v = a * b
                    v = v // _SCALE if v >= 0 else -((-v) // _SCALE)
                elif b == 0:
                    v = _NONE
                else:
                    v = a * _SCALE
                    neg = (v < 0) != (b < 0)
                    v = (v if v >= 0 else -v) // (b if b > 0 else -b)
                    if neg:
                        v = -v
                if v != _NONE:
                    if v > _MAXV:
                        v = _MAXV
                    elif v < -_MAXV:
                        v = -_MAXV
                s[sp - 1] = v
                pc += 1
            elif op == 0x06:  # SYS
                s[sp] = self.uptime if code[pc + 1] == 0 else self.tod
                sp += 1
                pc += 2
            elif op == 0x07:  # RACT
                s[sp] = st[self.rule_off + 3 * code[pc + 1]] & 1
                sp += 1
                pc += 2
            elif op == 0x08:  # TOD k1 k2
                t = self.tod
                lo = k[code[pc + 1]]
                hi = k[code[pc + 2]]
                if t == _NONE:
                    v = 0
                elif lo <= hi:
                    v = 1 if (lo <= t and t < hi) else 0
                else:
                    v = 1 if (t >= lo or t < hi) else 0
                s[sp] = v
                sp += 1
                pc += 3
            elif op >= 0x30 and op <= 0x32:  # JMP JZ JNZ
                target = code[pc + 1] | (code[pc + 2] << 8)
                if op == 0x30:
                    pc = target
                else:
                    sp -= 1
                    if (s[sp] > 0) == (op == 0x32):
                        pc = target
                    else:
                        pc += 3
            elif op == 0x40 or op == 0x41:  # RON ROFF
                i = code[pc + 1]
                v = 1 if op == 0x40 else 0
                st[3 * i] = v
                st[3 * i + 2] |= 1
                self._emit(1, i, v)
                pc += 2
            elif op == 0x42:  # RPULSE i k
                self._emit(2, code[pc + 1], k[code[pc + 2]])
                pc += 3
            elif op == 0x43:  # EVENT s sev
                self._emit(3, code[pc + 1], code[pc + 2])
                pc += 3
            elif op == 0x44 or op == 0x45:  # IVAL SLEEP
                self._emit(4 if op == 0x44 else 5, 0, k[code[pc + 1]])
                pc += 2
            else:  # 0x46 SETV
                sp -= 1
                o = 3 * code[pc + 1]
                v = s[sp]
                st[o] = v
                if v == _NONE:
                    st[o + 2] &= ~1
                else:
                    st[o + 2] |= 1
                pc += 2
        return s[sp - 1] if sp > 0 else 0

    def _agg(self, fn, w, arg):
        st = self.st
        wo = self.win_off[w]
        cap = self.win_cap[w]
        head = st[wo]
        cnt = st[wo + 1]
        now = self.now
        if fn & 0x80:
            limit = self.k[arg]
            n = 0
            idx = head
            while n < cnt:
                idx = cap - 1 if idx == 0 else idx - 1
                age = (now - st[wo + 3 + 2 * idx]) & _MASK
                if age >= _HALF or age > limit:
                    break
                n += 1
        else:
            n = arg if arg < cnt else cnt
        if n == 0:
            return _NONE
        base = fn & 0x7F
        idx = head
        if base == 3:  # rate: newest vs oldest of the n samples, per minute
            if n < 2:
                return _NONE
            idx = cap - 1 if idx == 0 else idx - 1
            v0 = st[wo + 2 + 2 * idx]
            t0 = st[wo + 3 + 2 * idx]
            idx = (head - n) % cap
            dv = v0 - st[wo + 2 + 2 * idx]
            dt = (t0 - st[wo + 3 + 2 * idx]) & _MASK
            if dt == 0 or dt >= _HALF:
                return _NONE
            v = dv * 60000 // dt if dv >= 0 else -((-dv) * 60000 // dt)
            if v > _MAXV:
                return _MAXV
            if v < -_MAXV:
                return -_MAXV
            return v
        j = 0
        acc = 0
        rem = 0
        while j < n:
            idx = cap - 1 if idx == 0 else idx - 1
            v = st[wo + 2 + 2 * idx]
            if base == 0:
                acc += v // n
                rem += v % n
            elif j == 0 or (base == 1 and v < acc) or (base == 2 and v > acc):
                acc = v
            j += 1
        if base == 0:
            acc += rem // n
        return acc
