/* Rules verifier: device/fieldlink/rules/verify.py in C, check for check in the same order, so that a
 * bad program is rejected with the same reason (fl_verify_message renders the same text). */
#include "fl_core.h"

#define HEADER_SIZE 28
#define MAX_DURATION_MS 86400000
#define DAY_MS 86400000

/* opcode -> operand bytes, pops, pushes, is_action (nops 0xFF: unknown opcode) */
typedef struct {
    uint8_t nops, pops, pushes, action;
} opinfo;

static const opinfo OPS[0x47] = {
    [0x01] = {1, 0, 1, 0}, [0x02] = {1, 0, 1, 0}, [0x03] = {1, 0, 1, 0}, [0x04] = {2, 0, 1, 0},
    [0x05] = {3, 0, 1, 0}, [0x06] = {1, 0, 1, 0}, [0x07] = {1, 0, 1, 0}, [0x08] = {2, 0, 1, 0},
    [0x10] = {0, 2, 1, 0}, [0x11] = {0, 2, 1, 0}, [0x12] = {0, 2, 1, 0}, [0x13] = {0, 2, 1, 0},
    [0x14] = {0, 2, 1, 0}, [0x15] = {0, 2, 1, 0}, [0x16] = {2, 3, 1, 0}, [0x18] = {0, 2, 1, 0},
    [0x19] = {0, 2, 1, 0}, [0x1A] = {0, 1, 1, 0}, [0x20] = {0, 2, 1, 0}, [0x21] = {0, 2, 1, 0},
    [0x22] = {0, 2, 1, 0}, [0x23] = {0, 2, 1, 0}, [0x24] = {0, 1, 1, 0}, [0x30] = {2, 0, 0, 0},
    [0x31] = {2, 1, 0, 0}, [0x32] = {2, 1, 0, 0}, [0x40] = {1, 0, 0, 1}, [0x41] = {1, 0, 0, 1},
    [0x42] = {2, 0, 0, 1}, [0x43] = {2, 0, 0, 1}, [0x44] = {1, 0, 0, 1}, [0x45] = {1, 0, 0, 1},
    [0x46] = {1, 1, 0, 1},
};

static int known(uint8_t op) {
    /* every defined opcode pushes or is a jump/action; the zero entries are holes */
    return op < 0x47 && (OPS[op].pushes || OPS[op].pops || OPS[op].nops);
}

static const char *op_name(int op) {
    switch (op) {
        case 0x01: return "PUSHK";
        case 0x02: return "PUSHS";
        case 0x03: return "LOAD";
        case 0x04: return "ABSENT";
        case 0x05: return "AGG";
        case 0x06: return "SYS";
        case 0x07: return "RACT";
        case 0x08: return "TOD";
        case 0x10: return "LT";
        case 0x11: return "LE";
        case 0x12: return "GT";
        case 0x13: return "GE";
        case 0x14: return "EQ";
        case 0x15: return "NE";
        case 0x16: return "HYS";
        case 0x18: return "AND";
        case 0x19: return "OR";
        case 0x1A: return "NOT";
        case 0x20: return "ADD";
        case 0x21: return "SUB";
        case 0x22: return "MUL";
        case 0x23: return "DIV";
        case 0x24: return "NEG";
        case 0x30: return "JMP";
        case 0x31: return "JZ";
        case 0x32: return "JNZ";
        case 0x40: return "RON";
        case 0x41: return "ROFF";
        case 0x42: return "RPULSE";
        case 0x43: return "EVENT";
        case 0x44: return "IVAL";
        case 0x45: return "SLEEP";
        case 0x46: return "SETV";
        default: return "?";
    }
}

static uint32_t u16(const uint8_t *b, size_t o) {
    return (uint32_t)b[o] | ((uint32_t)b[o + 1] << 8);
}

static uint32_t u32(const uint8_t *b, size_t o) {
    return (uint32_t)b[o] | ((uint32_t)b[o + 1] << 8) | ((uint32_t)b[o + 2] << 16) | ((uint32_t)b[o + 3] << 24);
}

static int fail(fl_verr *e, int code, int32_t a0, int32_t a1, int32_t a2, int32_t a3) {
    e->code = code;
    e->arg[0] = a0;
    e->arg[1] = a1;
    e->arg[2] = a2;
    e->arg[3] = a3;
    return code;
}

typedef struct {
    const uint8_t *code;
    fl_prog *p;
    fl_vwork *w;
    fl_verr *e;
} vctx;

static int duration(vctx *c, uint32_t k, uint32_t pc) {
    if (k >= c->p->n_consts) {
        return fail(c->e, FL_V_CONST, (int32_t)k, (int32_t)pc, 0, 0);
    }
    int32_t v = c->p->consts[k];
    if (v < 1 || v > MAX_DURATION_MS) {
        return fail(c->e, FL_V_DURATION, v, 1, MAX_DURATION_MS, (int32_t)pc);
    }
    return 0;
}

static int merge(vctx *c, uint32_t pc, int d) {
    int8_t old = c->w->depth[pc];
    if (old < 0) {
        c->w->depth[pc] = (int8_t)d;
    } else if (old != d) {
        return fail(c->e, FL_V_DEPTH_MISMATCH, (int32_t)pc, old, d, 0);
    }
    return 0;
}

/* _check_segment: one segment [start, end); *deepest and *outputs are results. */
static int check_segment(vctx *c, uint32_t start, uint32_t end, int actions_ok, int end_depth,
                         int *deepest_out, int *outputs_out) {
    const uint8_t *code = c->code;
    fl_prog *p = c->p;
    fl_vwork *w = c->w;
    fl_verr *e = c->e;
    for (uint32_t i = start; i <= end; i++) {
        w->depth[i] = -1;
        w->boundary[i >> 3] &= (uint8_t)~(1u << (i & 7));
    }
    w->depth[start] = 0;
    int deepest = 0, outputs = 0, r;
    uint32_t pc = start;
    while (pc < end) {
        if (w->depth[pc] < 0) {
            return fail(e, FL_V_UNREACHABLE, (int32_t)pc, 0, 0, 0);
        }
        w->boundary[pc >> 3] |= (uint8_t)(1u << (pc & 7));
        int d = w->depth[pc];
        uint8_t op = code[pc];
        if (!known(op)) {
            return fail(e, FL_V_OPCODE, op, (int32_t)pc, 0, 0);
        }
        opinfo info = OPS[op];
        if (pc + 1 + info.nops > end) {
            return fail(e, FL_V_PAST_END, op, (int32_t)pc, 0, 0);
        }
        uint32_t a = info.nops >= 1 ? code[pc + 1] : 0;
        uint32_t a2 = info.nops >= 2 ? code[pc + 2] : 0;
        if (info.action && !actions_ok) {
            return fail(e, FL_V_ACTION_IN_COND, op, (int32_t)pc, 0, 0);
        }
        switch (op) {
            case 0x01:  /* PUSHK */
                if (a >= p->n_consts) {
                    return fail(e, FL_V_CONST, (int32_t)a, (int32_t)pc, 0, 0);
                }
                break;
            case 0x02:  /* PUSHS */
                if (a > 1) {
                    return fail(e, FL_V_PUSHS, (int32_t)a, (int32_t)pc, 0, 0);
                }
                break;
            case 0x03: case 0x46: case 0x40: case 0x41: case 0x42: case 0x04: {
                if (a >= p->n_inputs) {
                    return fail(e, FL_V_INPUT, (int32_t)a, (int32_t)pc, 0, 0);
                }
                uint8_t k = p->kind[a];
                if (op == 0x46 && k != 5) {
                    return fail(e, FL_V_SETV_KIND, (int32_t)a, (int32_t)pc, 0, 0);
                }
                if ((op == 0x40 || op == 0x41 || op == 0x42) && k != 3) {
                    return fail(e, FL_V_RELAY_KIND, op, (int32_t)a, (int32_t)pc, 0);
                }
                if (op == 0x04 && k != 1 && k != 2) {
                    return fail(e, FL_V_ABSENT_KIND, (int32_t)a, (int32_t)pc, 0, 0);
                }
                if ((op == 0x42 || op == 0x04) && (r = duration(c, a2, pc)) != 0) {
                    return r;
                }
                break;
            }
            case 0x05: {  /* AGG fn w arg */
                uint32_t fn = a, wi = a2, arg = code[pc + 3];
                if ((fn & 0x7F) > 3) {
                    return fail(e, FL_V_AGG_FN, (int32_t)fn, (int32_t)pc, 0, 0);
                }
                if (wi >= p->n_windows) {
                    return fail(e, FL_V_WINDOW, (int32_t)wi, (int32_t)pc, 0, 0);
                }
                if (fn & 0x80) {
                    if ((r = duration(c, arg, pc)) != 0) {
                        return r;
                    }
                } else if (arg < 1 || arg > p->win_cap[wi]) {
                    return fail(e, FL_V_SAMPLES, (int32_t)arg, p->win_cap[wi], (int32_t)pc, 0);
                }
                break;
            }
            case 0x06:
                if (a >= 2) {
                    return fail(e, FL_V_SYSREG, (int32_t)a, (int32_t)pc, 0, 0);
                }
                break;
            case 0x07:
                if (a >= p->n_rules) {
                    return fail(e, FL_V_RULE, (int32_t)a, (int32_t)pc, 0, 0);
                }
                break;
            case 0x08: {
                uint32_t ks[2] = {a, a2};
                for (int j = 0; j < 2; j++) {
                    if (ks[j] >= p->n_consts) {
                        return fail(e, FL_V_CONST, (int32_t)ks[j], (int32_t)pc, 0, 0);
                    }
                    int32_t v = p->consts[ks[j]];
                    if (v < 0 || v >= DAY_MS) {
                        return fail(e, FL_V_TOD_RANGE, v, DAY_MS - 1, (int32_t)pc, 0);
                    }
                }
                break;
            }
            case 0x16:
                if (a >= p->n_hyst) {
                    return fail(e, FL_V_HYS_CELL, (int32_t)a, (int32_t)pc, 0, 0);
                }
                if (w->hyst_used[a]) {
                    return fail(e, FL_V_HYS_REUSE, (int32_t)a, (int32_t)pc, 0, 0);
                }
                w->hyst_used[a] = 1;
                if (a2 < 0x10 || a2 > 0x13) {
                    return fail(e, FL_V_HYS_CMP, (int32_t)a2, (int32_t)pc, 0, 0);
                }
                break;
            case 0x43:
                if (a >= p->n_strings) {
                    return fail(e, FL_V_STRING, (int32_t)a, (int32_t)pc, 0, 0);
                }
                if (a2 >= 4) {
                    return fail(e, FL_V_SEVERITY, (int32_t)a2, (int32_t)pc, 0, 0);
                }
                break;
            case 0x44: case 0x45:
                if ((r = duration(c, a, pc)) != 0) {
                    return r;
                }
                break;
            default:
                break;
        }
        if (d < info.pops) {
            return fail(e, FL_V_UNDERFLOW, (int32_t)pc, 0, 0, 0);
        }
        d = d - info.pops + info.pushes;
        if (d > deepest) {
            deepest = d;
        }
        if (deepest > FL_MAX_STACK) {
            return fail(e, FL_V_DEPTH, FL_MAX_STACK, (int32_t)pc, 0, 0);
        }
        uint32_t nxt = pc + 1 + info.nops;
        if (info.action && op != 0x46) {
            outputs++;
        }
        if (op >= 0x30 && op <= 0x32) {
            uint32_t target = a | (a2 << 8);
            if (target < nxt) {
                return fail(e, FL_V_BACKJUMP, (int32_t)pc, 0, 0, 0);
            }
            if (target > end) {
                return fail(e, FL_V_JUMP_OUT, (int32_t)target, (int32_t)pc, 0, 0);
            }
            if ((r = merge(c, target, d)) != 0) {
                return r;
            }
            if (op != 0x30 && (r = merge(c, nxt, d)) != 0) {
                return r;
            }
        } else if ((r = merge(c, nxt, d)) != 0) {
            return r;
        }
        pc = nxt;
    }
    /* the first recorded jump target (in recording order, i.e. jump order) that is not an
     * instruction boundary */
    pc = start;
    while (pc < end) {
        uint8_t op = code[pc];
        if (op >= 0x30 && op <= 0x32) {
            uint32_t target = u16(code, pc + 1);
            if (target != end && !(w->boundary[target >> 3] & (1u << (target & 7)))) {
                return fail(e, FL_V_MID_INSN, (int32_t)target, 0, 0, 0);
            }
        }
        pc += 1 + OPS[op].nops;
    }
    if (w->depth[end] != end_depth) {
        return fail(e, FL_V_FINAL_DEPTH, w->depth[end], end_depth, 0, 0);
    }
    *deepest_out = deepest;
    *outputs_out = outputs;
    return 0;
}

int fl_verify(const uint8_t *b, size_t n, fl_prog *p, fl_vwork *w, fl_verr *e) {
    e->rule = -1;
    e->seg = 0;
    e->code = FL_V_OK;
    p->size = FL_PROG_REFUSED;  /* set to n only when every check passed: the VM refuses anything else */
    if (n < HEADER_SIZE + 4) {
        return fail(e, FL_V_SHORT, (int32_t)n, 0, 0, 0);
    }
    if (b[0] != 'F' || b[1] != 'L' || b[2] != 'R' || b[3] != 'V') {
        return fail(e, FL_V_MAGIC, 0, 0, 0, 0);
    }
    if (b[4] != 1) {
        return fail(e, FL_V_VERSION, b[4], 1, 0, 0);
    }
    if (b[5] != 0) {
        return fail(e, FL_V_FLAGS, b[5], 0, 0, 0);
    }
    uint32_t ni = b[6], nw = b[7], nk = b[8], nr = b[9], ns = b[10], nh = b[11];
    uint32_t code_size = u16(b, 12), str_size = u16(b, 14), max_stack = u16(b, 16);
    uint32_t state_words = u16(b, 18), n_actions = u16(b, 20);
    if (u16(b, 22) != 0) {
        return fail(e, FL_V_RESERVED, 0, 0, 0, 0);
    }
    uint32_t total = u32(b, 24);
    if (total != n) {
        /* arg 0 is printed unsigned */
        return fail(e, FL_V_SIZE_FIELD, (int32_t)total, (int32_t)(n > 0x7FFFFFFF ? 0x7FFFFFFF : n), 0, 0);
    }
    if (n > FL_MAX_PROGRAM) {
        return fail(e, FL_V_PROG_LIMIT, (int32_t)(n > 0x7FFFFFFF ? 0x7FFFFFFF : n), FL_MAX_PROGRAM, 0, 0);
    }
    uint32_t expect = HEADER_SIZE + 4 * ni + 2 * nw + 4 * nk + 16 * nr + str_size + code_size + 4;
    if (expect != n) {
        return fail(e, FL_V_SECTIONS, (int32_t)expect, (int32_t)n, 0, 0);
    }
    uint32_t crc = fl_crc32(b, n - 4);
    if (u32(b, n - 4) != crc) {
        return fail(e, FL_V_CHECKSUM, 0, 0, 0, 0);
    }
    if (ni > FL_MAX_INPUTS) {
        return fail(e, FL_V_INPUTS_LIMIT, (int32_t)ni, FL_MAX_INPUTS, 0, 0);
    }
    if (nw > FL_MAX_WINDOWS) {
        return fail(e, FL_V_WINDOWS_LIMIT, (int32_t)nw, FL_MAX_WINDOWS, 0, 0);
    }
    if (nr == 0) {
        return fail(e, FL_V_NO_RULES, 0, 0, 0, 0);
    }
    if (nr > FL_MAX_RULES) {
        return fail(e, FL_V_RULES_LIMIT, (int32_t)nr, FL_MAX_RULES, 0, 0);
    }
    if (code_size > FL_MAX_CODE) {
        return fail(e, FL_V_CODE_LIMIT, (int32_t)code_size, FL_MAX_CODE, 0, 0);
    }
    if (max_stack < 1 || max_stack > FL_MAX_STACK) {
        return fail(e, FL_V_STACK_DECL, (int32_t)max_stack, FL_MAX_STACK, 0, 0);
    }
    p->crc = crc;
    p->n_inputs = (uint16_t)ni;
    p->n_windows = (uint16_t)nw;
    p->n_consts = (uint16_t)nk;
    p->n_rules = (uint16_t)nr;
    p->n_strings = (uint16_t)ns;
    p->n_hyst = (uint16_t)nh;
    p->code_size = (uint16_t)code_size;
    p->max_stack = (uint16_t)max_stack;
    p->n_actions = (uint16_t)n_actions;
    uint32_t in_at = HEADER_SIZE;
    uint32_t win_at = in_at + 4 * ni;
    uint32_t k_at = win_at + 2 * nw;
    uint32_t rule_at = k_at + 4 * nk;
    uint32_t str_at = rule_at + 16 * nr;
    uint32_t code_at = str_at + str_size;
    p->str_at = (uint16_t)str_at;
    p->code_at = (uint16_t)code_at;

    /* strings */
    uint32_t s = str_at, send = str_at + str_size;
    for (uint32_t j = 0; j < ns; j++) {
        if (s >= send) {
            return fail(e, FL_V_STR_SHORT, 0, 0, 0, 0);
        }
        uint32_t ln = b[s];
        if (ln == 0 || s + 1 + ln > send) {
            return fail(e, FL_V_STR_LEN, (int32_t)j, 0, 0, 0);
        }
        for (uint32_t q = s + 1; q < s + 1 + ln; q++) {
            if (b[q] < 0x21 || b[q] > 0x7E) {
                return fail(e, FL_V_STR_ASCII, (int32_t)j, 0, 0, 0);
            }
        }
        s += 1 + ln;
    }
    if (s != send) {
        return fail(e, FL_V_STR_TRAIL, 0, 0, 0, 0);
    }
    for (uint32_t j = 0; j < nk; j++) {
        p->consts[j] = (int32_t)u32(b, k_at + 4 * j);
    }
    /* inputs */
    for (uint32_t j = 0; j < ni; j++) {
        uint32_t o = in_at + 4 * j;
        uint8_t kind = b[o], init = b[o + 1], name = b[o + 2], res = b[o + 3];
        if (kind < 1 || kind > 5) {
            return fail(e, FL_V_IN_KIND, (int32_t)j, kind, 0, 0);
        }
        if (init != 0xFF && init >= nk) {
            return fail(e, FL_V_IN_INIT, (int32_t)j, init, 0, 0);
        }
        if (init != 0xFF && (kind == 3 || kind == 4) && p->consts[init] != 0 && p->consts[init] != 1) {
            return fail(e, FL_V_IN_BOOL, (int32_t)j, 0, 0, 0);
        }
        if (name >= ns) {
            return fail(e, FL_V_IN_NAME, (int32_t)j, name, 0, 0);
        }
        if (res != 0) {
            return fail(e, FL_V_IN_RES, (int32_t)j, 0, 0, 0);
        }
        p->kind[j] = kind;
        p->init[j] = init;
    }
    /* state layout: inputs, rules, hysteresis cells, windows */
    uint32_t words = 3 * ni;
    p->rule_off = (uint16_t)words;
    words += 3 * nr;
    p->hyst_off = (uint16_t)words;
    words += nh;
    for (uint32_t j = 0; j < nw; j++) {
        uint8_t inp = b[win_at + 2 * j], cap = b[win_at + 2 * j + 1];
        if (inp >= ni) {
            return fail(e, FL_V_WIN_INPUT, (int32_t)j, inp, 0, 0);
        }
        if (p->kind[inp] != 1 && p->kind[inp] != 2) {
            return fail(e, FL_V_WIN_KIND, (int32_t)j, inp, 0, 0);
        }
        if (cap < 1 || cap > FL_MAX_WINDOW) {
            return fail(e, FL_V_WIN_CAP, (int32_t)j, cap, FL_MAX_WINDOW, 0);
        }
        p->win_in[j] = inp;
        p->win_cap[j] = cap;
        p->win_off[j] = (uint16_t)words;
        words += 2 + 2 * (uint32_t)cap;
    }
    if (words != state_words) {
        return fail(e, FL_V_STATE_FIELD, (int32_t)state_words, (int32_t)words, 0, 0);
    }
    if (words > FL_MAX_STATE_WORDS) {
        return fail(e, FL_V_STATE_LIMIT, (int32_t)words, FL_MAX_STATE_WORDS, 0, 0);
    }
    p->state_words = (uint16_t)words;
    /* rules */
    uint32_t prev = 0;
    for (uint32_t j = 0; j < nr; j++) {
        uint32_t o = rule_at + 16 * j;
        if (b[o] >= ns) {
            return fail(e, FL_V_RULE_NAME, (int32_t)j, b[o], 0, 0);
        }
        if (b[o + 1] != 0) {
            return fail(e, FL_V_RULE_RES, (int32_t)j, 0, 0, 0);
        }
        uint32_t t = u16(b, o + 2), el = u16(b, o + 4), en = u16(b, o + 6);
        int32_t fo = (int32_t)u32(b, o + 8), co = (int32_t)u32(b, o + 12);
        if (!(prev < t && t <= el && el <= en && en <= code_size)) {
            return fail(e, FL_V_RULE_SEG, (int32_t)j, 0, 0, 0);
        }
        if (t == el && el == en) {
            return fail(e, FL_V_RULE_NOACT, (int32_t)j, 0, 0, 0);
        }
        if (fo < 0 || fo > MAX_DURATION_MS || co < 0 || co > MAX_DURATION_MS) {
            return fail(e, FL_V_RULE_DUR, (int32_t)j, MAX_DURATION_MS, 0, 0);
        }
        p->seg[4 * j] = (uint16_t)prev;
        p->seg[4 * j + 1] = (uint16_t)t;
        p->seg[4 * j + 2] = (uint16_t)el;
        p->seg[4 * j + 3] = (uint16_t)en;
        p->rfor[j] = fo;
        p->rcool[j] = co;
        prev = en;
    }
    if (prev != code_size) {
        return fail(e, FL_V_RULES_COVER, (int32_t)prev, (int32_t)code_size, 0, 0);
    }
    /* code */
    vctx c = {b + code_at, p, w, e};
    for (uint32_t j = 0; j < 256; j++) {
        w->hyst_used[j] = 0;
    }
    int deepest = 0, actions = 0, d, a, r;
    for (uint32_t j = 0; j < nr; j++) {
        uint32_t c0 = p->seg[4 * j], t = p->seg[4 * j + 1], el = p->seg[4 * j + 2], en = p->seg[4 * j + 3];
        e->rule = (int32_t)j;
        e->seg = 0;
        if ((r = check_segment(&c, c0, t, 0, 1, &d, &a)) != 0) {
            return r;
        }
        if (d > deepest) {
            deepest = d;
        }
        uint32_t s0[2] = {t, el}, s1[2] = {el, en};
        for (int q = 0; q < 2; q++) {
            if (s0[q] < s1[q]) {
                e->seg = 1 + q;
                if ((r = check_segment(&c, s0[q], s1[q], 1, 0, &d, &a)) != 0) {
                    return r;
                }
                if (d > deepest) {
                    deepest = d;
                }
                actions += a;
            }
        }
    }
    e->rule = -1;
    if ((uint32_t)deepest > max_stack) {
        return fail(e, FL_V_STACK_EXCEEDED, deepest, (int32_t)max_stack, 0, 0);
    }
    if ((uint32_t)actions != n_actions) {
        return fail(e, FL_V_ACTIONS, (int32_t)n_actions, actions, 0, 0);
    }
    e->code = FL_V_OK;
    p->size = (uint32_t)n;
    return FL_V_OK;
}

/* ---- messages: the text of verify.py's VerifyError ----
 * %d signed arg, %u unsigned arg, %x two hex digits, %s opcode name of the arg */
static const char *const MSG[FL_V_COUNT] = {
    [FL_V_OK] = "ok",
    [FL_V_SHORT] = "program too short (%d bytes)",
    [FL_V_MAGIC] = "bad magic",
    [FL_V_VERSION] = "unsupported version %d (expected %d)",
    [FL_V_FLAGS] = "unknown flags 0x%x",
    [FL_V_RESERVED] = "reserved header field is not 0",
    [FL_V_SIZE_FIELD] = "size field says %u bytes, program has %d",
    [FL_V_PROG_LIMIT] = "program size %d exceeds limit %d",
    [FL_V_SECTIONS] = "section sizes add up to %d bytes, program has %d",
    [FL_V_CHECKSUM] = "checksum mismatch",
    [FL_V_INPUTS_LIMIT] = "too many inputs (%d > %d)",
    [FL_V_WINDOWS_LIMIT] = "too many windows (%d > %d)",
    [FL_V_NO_RULES] = "program has no rules",
    [FL_V_RULES_LIMIT] = "too many rules (%d > %d)",
    [FL_V_CODE_LIMIT] = "code size %d exceeds limit %d",
    [FL_V_STACK_DECL] = "declared stack depth %d outside 1..%d",
    [FL_V_STR_SHORT] = "string table shorter than its count",
    [FL_V_STR_LEN] = "string %d has a bad length",
    [FL_V_STR_ASCII] = "string %d is not printable ASCII",
    [FL_V_STR_TRAIL] = "string table has trailing bytes",
    [FL_V_IN_KIND] = "input %d has unknown kind %d",
    [FL_V_IN_INIT] = "input %d initial value: const %d out of range",
    [FL_V_IN_BOOL] = "input %d: boolean initial value must be 0 or 1",
    [FL_V_IN_NAME] = "input %d name: string %d out of range",
    [FL_V_IN_RES] = "input %d reserved byte is not 0",
    [FL_V_WIN_INPUT] = "window %d: input %d out of range",
    [FL_V_WIN_KIND] = "window %d: input %d is not a sensor or remote value",
    [FL_V_WIN_CAP] = "window %d: capacity %d outside 1..%d",
    [FL_V_STATE_FIELD] = "state size field says %d words, layout needs %d",
    [FL_V_STATE_LIMIT] = "state size %d words exceeds limit %d",
    [FL_V_RULE_NAME] = "rule %d name: string %d out of range",
    [FL_V_RULE_RES] = "rule %d reserved byte is not 0",
    [FL_V_RULE_SEG] = "rule %d: segments out of order or out of bounds",
    [FL_V_RULE_NOACT] = "rule %d has no actions",
    [FL_V_RULE_DUR] = "rule %d: for/cooldown outside 0..%d ms",
    [FL_V_RULES_COVER] = "rules cover %d of %d code bytes",
    [FL_V_UNREACHABLE] = "unreachable code at %d",
    [FL_V_OPCODE] = "unknown opcode 0x%x at %d",
    [FL_V_PAST_END] = "%s at %d runs past the end of its segment",
    [FL_V_ACTION_IN_COND] = "action %s at %d in a condition",
    [FL_V_CONST] = "const %d out of range at %d",
    [FL_V_PUSHS] = "PUSHS value %d is not 0 or 1 at %d",
    [FL_V_INPUT] = "input %d out of range at %d",
    [FL_V_SETV_KIND] = "SETV target %d is not a variable at %d",
    [FL_V_RELAY_KIND] = "%s target %d is not a relay at %d",
    [FL_V_ABSENT_KIND] = "ABSENT input %d is not a sensor or remote value at %d",
    [FL_V_AGG_FN] = "unknown aggregate function %d at %d",
    [FL_V_WINDOW] = "window %d out of range at %d",
    [FL_V_SAMPLES] = "sample count %d outside 1..%d at %d",
    [FL_V_SYSREG] = "system register %d out of range at %d",
    [FL_V_RULE] = "rule %d out of range at %d",
    [FL_V_TOD_RANGE] = "time of day %d outside 0..%d ms at %d",
    [FL_V_HYS_CELL] = "hysteresis cell %d out of range at %d",
    [FL_V_HYS_REUSE] = "hysteresis cell %d used twice at %d",
    [FL_V_HYS_CMP] = "hysteresis comparison 0x%x invalid at %d",
    [FL_V_STRING] = "string %d out of range at %d",
    [FL_V_SEVERITY] = "severity %d out of range at %d",
    [FL_V_DURATION] = "duration %d outside %d..%d ms at %d",
    [FL_V_UNDERFLOW] = "stack underflow at %d",
    [FL_V_DEPTH] = "stack depth exceeds %d at %d",
    [FL_V_BACKJUMP] = "backward jump at %d",
    [FL_V_JUMP_OUT] = "jump target %d outside its segment at %d",
    [FL_V_DEPTH_MISMATCH] = "inconsistent stack depth at %d (%d vs %d)",
    [FL_V_MID_INSN] = "jump into the middle of an instruction (%d)",
    [FL_V_FINAL_DEPTH] = "leaves %d values on the stack, expected %d",
    [FL_V_STACK_EXCEEDED] = "stack depth %d exceeds declared %d",
    [FL_V_ACTIONS] = "action count field says %d, code has %d",
};

static const char *const CODE_NAMES[FL_V_COUNT] = {
    "ok", "short", "magic", "version", "flags", "reserved", "size_field", "prog_limit", "sections",
    "checksum", "inputs_limit", "windows_limit", "no_rules", "rules_limit", "code_limit", "stack_decl",
    "str_short", "str_len", "str_ascii", "str_trail", "in_kind", "in_init", "in_bool", "in_name",
    "in_res", "win_input", "win_kind", "win_cap", "state_field", "state_limit", "rule_name", "rule_res",
    "rule_seg", "rule_noact", "rule_dur", "rules_cover", "unreachable", "opcode", "past_end",
    "action_in_cond", "const", "pushs", "input", "setv_kind", "relay_kind", "absent_kind", "agg_fn",
    "window", "samples", "sysreg", "rule", "tod_range", "hys_cell", "hys_reuse", "hys_cmp", "string",
    "severity", "duration", "underflow", "depth", "backjump", "jump_out", "depth_mismatch", "mid_insn",
    "final_depth", "stack_exceeded", "actions",
};

const char *fl_verify_code_name(int code) {
    return (code >= 0 && code < FL_V_COUNT) ? CODE_NAMES[code] : "?";
}

typedef struct {
    char *buf;
    size_t cap, n;
} sbuf;

static void put(sbuf *s, char ch) {
    if (s->n + 1 < s->cap) {
        s->buf[s->n] = ch;
    }
    s->n++;
}

static void puts_(sbuf *s, const char *t) {
    while (*t) {
        put(s, *t++);
    }
}

static void putu(sbuf *s, uint32_t v) {
    char tmp[12];
    int k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && k < 12);
    while (k) {
        put(s, tmp[--k]);
    }
}

static void putd(sbuf *s, int32_t v) {
    if (v < 0) {
        put(s, '-');
        putu(s, (uint32_t)0 - (uint32_t)v);
    } else {
        putu(s, (uint32_t)v);
    }
}

size_t fl_verify_message(const fl_verr *err, char *buf, size_t cap) {
    sbuf s = {buf, cap, 0};
    int code = err->code;
    if (code < 0 || code >= FL_V_COUNT) {
        puts_(&s, "unknown reason");
    } else {
        if (code >= FL_V_UNREACHABLE && code <= FL_V_FINAL_DEPTH && err->rule >= 0) {
            puts_(&s, "rule ");
            putd(&s, err->rule);
            puts_(&s, err->seg == 0 ? " condition: " : err->seg == 1 ? " then: " : " else: ");
        }
        const char *t = MSG[code];
        int ai = 0;
        while (*t) {
            if (t[0] == '%' && t[1] && ai < 4) {
                int32_t v = err->arg[ai++];
                char f = t[1];
                t += 2;
                if (f == 'd') {
                    putd(&s, v);
                } else if (f == 'u') {
                    putu(&s, (uint32_t)v);
                } else if (f == 'x') {
                    static const char hex[] = "0123456789abcdef";
                    uint32_t u = (uint32_t)v;
                    if (u > 0xFF) {
                        /* %02x of a larger value: all digits */
                        char tmp[8];
                        int k = 0;
                        while (u && k < 8) {
                            tmp[k++] = hex[u & 15];
                            u >>= 4;
                        }
                        while (k) {
                            put(&s, tmp[--k]);
                        }
                    } else {
                        put(&s, hex[u >> 4]);
                        put(&s, hex[u & 15]);
                    }
                } else {
                    puts_(&s, op_name(v));
                }
            } else {
                put(&s, *t++);
            }
        }
    }
    if (cap) {
        buf[s.n < cap ? s.n : cap - 1] = 0;
    }
    return s.n < cap ? s.n : (cap ? cap - 1 : 0);
}
