# Rule program format, opcodes and limits: the constants shared by the host compiler, the device
# verifier and VM, and (by hand) the C VM. docs/rules.md is the normative description; keep both in sync.
#
# Values are fixed-point int32: a number is stored as round(x * SCALE) and saturated to [-MAXV, MAXV];
# NONE (= -2**30) means "no value" (an input never seen, an empty window, division by zero).
# Booleans are raw 0/1. Times are milliseconds modulo 2**30 (MicroPython's ticks period), compared
# with a wrapping difference; every duration in a program is at most MAX_DURATION_MS.
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

MAGIC = b"FLRV"
VERSION = const(1)
HEADER_SIZE = const(28)
CRC_SIZE = const(4)

SCALE = const(1000)
MAXV = const(0x3FFFFFFF)
NONE = const(-0x40000000)
TICKS_PERIOD = const(0x40000000)
TICKS_MASK = const(0x3FFFFFFF)
TICKS_HALF = const(0x20000000)

# ---- limits (enforced by the compiler and again by the verifier) ----
MAX_RULES = const(128)
MAX_INPUTS = const(64)
MAX_CONSTS = const(255)
MAX_STRINGS = const(255)
MAX_HYST = const(255)
MAX_WINDOWS = const(32)
MAX_WINDOW = const(128)          # samples per window
MAX_STACK = const(16)
MAX_CODE = const(4096)           # bytes of bytecode
MAX_PROGRAM = const(8192)        # bytes of the whole program file
MAX_STATE_WORDS = const(1536)    # int32 words of VM state (6 KiB)
MAX_DURATION_MS = const(86400000)  # 24 h: every for/cooldown/window/absence/pulse/interval/sleep
DAY_MS = const(86400000)

# ---- input kinds (input table) ----
IN_SENSOR = const(1)   # "sensor.quantity", number
IN_REMOTE = const(2)   # "remote.name", number received via the gateway
IN_RELAY = const(3)    # "relay.name", boolean; also written by RON/ROFF
IN_FLAG = const(4)     # "flag.name", boolean feature flag
IN_VAR = const(5)      # "var.name", number written by SETV
INPUT_KINDS = ("", "sensor", "remote", "relay", "flag", "var")
NO_INIT = const(0xFF)

# input state flags
F_VALID = const(1)
F_FRESH = const(2)
# rule state flags
R_ACTIVE = const(1)
R_HOLDING = const(2)   # condition currently true; `since` is valid
R_FIRED = const(4)     # fired at least once; `last` is valid

# state words per record
IN_WORDS = const(3)    # value, t_last, flags
RULE_WORDS = const(3)  # flags, since, last
WIN_HEAD = const(2)    # head, count; then cap * (value, time)

# ---- system registers (SYS) ----
SYS_UPTIME = const(0)  # uptime in seconds (fixed point, i.e. milliseconds), saturated
SYS_TOD = const(1)     # time of day in seconds (fixed point), NONE if the clock is not set
N_SYS = const(2)

# ---- aggregate functions (AGG fn operand; | AGG_TIME: arg is a const index of a window in ms) ----
AGG_AVG = const(0)
AGG_MIN = const(1)
AGG_MAX = const(2)
AGG_RATE = const(3)    # change per minute between the oldest and newest sample in the window
AGG_TIME = const(0x80)
AGG_NAMES = ("avg", "min", "max", "rate")

# ---- action kinds (VM output buffer: kind, operand, arg) ----
ACT_RELAY = const(1)   # operand input index (relay), arg 0/1
ACT_PULSE = const(2)   # operand input index (relay), arg ms
ACT_EVENT = const(3)   # operand string index, arg severity
ACT_INTERVAL = const(4)  # arg ms
ACT_SLEEP = const(5)     # arg ms
SEVERITIES = ("info", "warning", "alert", "critical")

# ---- opcodes ----
PUSHK = const(0x01)   # k        push consts[k]
PUSHS = const(0x02)   # b        push raw 0 or 1
LOAD = const(0x03)    # i        push input value (NONE if not valid)
ABSENT = const(0x04)  # i k      push 1 if input i has not been updated for >= consts[k] ms
AGG = const(0x05)     # fn w a   push aggregate of window w
SYS = const(0x06)     # r        push system register r
RACT = const(0x07)    # r        push 1 if rule r is active
TOD = const(0x08)     # k1 k2    push 1 if consts[k1] <= time of day (ms) < consts[k2] (wraps midnight)
LT = const(0x10)
LE = const(0x11)
GT = const(0x12)
GE = const(0x13)
EQ = const(0x14)
NE = const(0x15)
HYS = const(0x16)     # c cmp    pop h, t, x: comparison cmp (LT..GE) with hysteresis h, state cell c
AND = const(0x18)
OR = const(0x19)
NOT = const(0x1A)
ADD = const(0x20)
SUB = const(0x21)
MUL = const(0x22)
DIV = const(0x23)
NEG = const(0x24)
JMP = const(0x30)     # hh       jump to absolute code offset (forward only)
JZ = const(0x31)      # hh       pop; jump if 0
JNZ = const(0x32)     # hh       pop; jump if not 0
RON = const(0x40)     # i        relay i on
ROFF = const(0x41)    # i        relay i off
RPULSE = const(0x42)  # i k      relay i on for consts[k] ms
EVENT = const(0x43)   # s sev    emit event strings[s] with severity sev
IVAL = const(0x44)    # k        set sampling interval to consts[k] ms
SLEEP = const(0x45)   # k        request deep sleep for consts[k] ms
SETV = const(0x46)    # i        pop into variable input i

# opcode -> (name, operand bytes, pops, pushes, is_action)
OPS = {
    PUSHK: ("PUSHK", 1, 0, 1, 0),
    PUSHS: ("PUSHS", 1, 0, 1, 0),
    LOAD: ("LOAD", 1, 0, 1, 0),
    ABSENT: ("ABSENT", 2, 0, 1, 0),
    AGG: ("AGG", 3, 0, 1, 0),
    SYS: ("SYS", 1, 0, 1, 0),
    RACT: ("RACT", 1, 0, 1, 0),
    TOD: ("TOD", 2, 0, 1, 0),
    LT: ("LT", 0, 2, 1, 0),
    LE: ("LE", 0, 2, 1, 0),
    GT: ("GT", 0, 2, 1, 0),
    GE: ("GE", 0, 2, 1, 0),
    EQ: ("EQ", 0, 2, 1, 0),
    NE: ("NE", 0, 2, 1, 0),
    HYS: ("HYS", 2, 3, 1, 0),
    AND: ("AND", 0, 2, 1, 0),
    OR: ("OR", 0, 2, 1, 0),
    NOT: ("NOT", 0, 1, 1, 0),
    ADD: ("ADD", 0, 2, 1, 0),
    SUB: ("SUB", 0, 2, 1, 0),
    MUL: ("MUL", 0, 2, 1, 0),
    DIV: ("DIV", 0, 2, 1, 0),
    NEG: ("NEG", 0, 1, 1, 0),
    JMP: ("JMP", 2, 0, 0, 0),
    JZ: ("JZ", 2, 1, 0, 0),
    JNZ: ("JNZ", 2, 1, 0, 0),
    RON: ("RON", 1, 0, 0, 1),
    ROFF: ("ROFF", 1, 0, 0, 1),
    RPULSE: ("RPULSE", 2, 0, 0, 1),
    EVENT: ("EVENT", 2, 0, 0, 1),
    IVAL: ("IVAL", 1, 0, 0, 1),
    SLEEP: ("SLEEP", 1, 0, 0, 1),
    SETV: ("SETV", 1, 1, 0, 1),
}
# actions that produce an entry in the output buffer (SETV only changes state)
OUTPUT_OPS = (RON, ROFF, RPULSE, EVENT, IVAL, SLEEP)


def ticks_diff(a, b):
    """a - b for times modulo 2**30, in -2**29 .. 2**29 - 1 (like time.ticks_diff)."""
    d = (a - b) & TICKS_MASK
    if d >= TICKS_HALF:
        d -= TICKS_PERIOD
    return d


def saturate(v):
    if v > MAXV:
        return MAXV
    if v < -MAXV:
        return -MAXV
    return v


def to_fixed(x):
    """A float/int reading -> fixed point (round half away from zero, saturated). Allocates a float."""
    if x is True or x is False:
        return 1 if x else 0
    v = x * SCALE
    if v >= 0:
        v = int(v + 0.5)
    else:
        v = -int(-v + 0.5)
    return saturate(v)


def parse_fixed(s):
    """A decimal string ("21.5", "-0.125", "3") -> fixed point without going through a float, so that
    CPython and MicroPython give identical values. Digits beyond 1/SCALE are rounded half away from zero."""
    s = s.strip()
    neg = False
    if s[:1] in ("-", "+"):
        neg = s[0] == "-"
        s = s[1:]
    if not s:
        raise ValueError("empty number")
    dot = s.find(".")
    if dot < 0:
        ip, fp = s, ""
    else:
        ip, fp = s[:dot], s[dot + 1:]
    if not ip and not fp:
        raise ValueError("bad number")
    for ch in ip + fp:
        if ch < "0" or ch > "9":
            raise ValueError("bad number %r" % s)
    v = int(ip or "0") * SCALE
    frac = (fp + "000")[:3]
    v += int(frac)
    if len(fp) > 3 and fp[3] >= "5":
        v += 1
    v = saturate(v)
    return -v if neg else v


def format_fixed(v):
    """Fixed point -> shortest decimal string ("21.5", "-3", "none")."""
    if v == NONE:
        return "none"
    sign = "-" if v < 0 else ""
    v = -v if v < 0 else v
    ip, fp = v // SCALE, v % SCALE
    if not fp:
        return "%s%d" % (sign, ip)
    f = "%03d" % fp
    while f[-1] == "0":
        f = f[:-1]
    return "%s%d.%s" % (sign, ip, f)
