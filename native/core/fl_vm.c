/* Rules VM: device/fieldlink/rules/vm.py in C, on the same int32 state array (docs/rules.md).
 * Number model: int32 fixed point saturated to [-MAXV, MAXV], NONE = -2**30; every arithmetic op is
 * computed exactly in int64 and saturated; NONE propagates; comparisons with NONE are false. */
#include "fl_core.h"

#define MASK 0x3FFFFFFF
#define HALF 0x20000000
#define MAXV FL_MAXV
#define NONE FL_NONE
#define MAXDUR 86400000

/* 64-bit division: native where the CPU has it; a bounded shift-subtract loop on 32-bit targets so
 * that the natmod needs no libgcc helpers (__divdi3 / __moddi3) there. Truncates toward zero. */
#if defined(FL_SOFT_DIV64) || UINTPTR_MAX <= 0xFFFFFFFFu
static int64_t div64(int64_t a, int64_t b) {
    uint64_t ua = a < 0 ? (uint64_t)0 - (uint64_t)a : (uint64_t)a;
    uint64_t ub = b < 0 ? (uint64_t)0 - (uint64_t)b : (uint64_t)b;
    uint64_t q = 0, r = 0;
    for (int i = 0; i < 64; i++) {  /* constant shifts only: no __ashldi3 either */
        r = (r << 1) | (ua >> 63);
        ua <<= 1;
        q <<= 1;
        if (r >= ub) {
            r -= ub;
            q |= 1u;
        }
    }
    return (a < 0) != (b < 0) ? -(int64_t)q : (int64_t)q;
}
#else
static int64_t div64(int64_t a, int64_t b) {
    return a / b;
}
#endif

static int32_t sat(int64_t v) {
    return v > MAXV ? MAXV : v < -MAXV ? -MAXV : (int32_t)v;
}

static int32_t tdiff(int32_t a, int32_t b) {
    /* (a - b) mod 2**30, in 0 .. 2**30 - 1 */
    return (int32_t)(((uint32_t)a - (uint32_t)b) & MASK);
}

typedef struct {
    const fl_prog *p;
    const uint8_t *code;
    int32_t *st, *s, *out;
    uint32_t stack_cap, out_cap, n_out;
    int32_t now, tod, uptime, cur_rule;
    int bad;
} vm;

size_t fl_sizeof_prog(void) {
    return sizeof(fl_prog);
}

size_t fl_sizeof_vwork(void) {
    return sizeof(fl_vwork);
}

size_t fl_sizeof_verr(void) {
    return sizeof(fl_verr);
}

int fl_vm_init(const fl_prog *p, int32_t *st, size_t st_words) {
    if (p->size == FL_PROG_REFUSED || st_words < p->state_words) {
        return FL_E_ARG;
    }
    for (uint32_t i = 0; i < p->state_words; i++) {
        st[i] = 0;
    }
    for (uint32_t i = 0; i < p->n_inputs; i++) {
        if (p->init[i] != 0xFF) {
            st[3 * i] = p->consts[p->init[i]];
            st[3 * i + 2] = 1;
        }
    }
    return 0;
}

int fl_vm_set_input(const fl_prog *p, int32_t *st, uint32_t i, int32_t value, int32_t now) {
    if (p->size == FL_PROG_REFUSED || i >= p->n_inputs) {
        return FL_E_ARG;
    }
    st[3 * i] = value > MAXV ? MAXV : value < -MAXV ? -MAXV : value;
    st[3 * i + 1] = now & MASK;
    st[3 * i + 2] = 3;
    return 0;
}

static void emit(vm *v, int32_t kind, int32_t operand, int32_t arg) {
    if (v->n_out >= v->out_cap) {
        v->bad = 1;  /* impossible for a verified program: n_out <= n_actions */
        return;
    }
    int32_t *o = v->out + 4 * v->n_out;
    o[0] = kind;
    o[1] = operand;
    o[2] = arg;
    o[3] = v->cur_rule;
    v->n_out++;
}

static int32_t agg(vm *v, uint32_t fn, uint32_t w, uint32_t arg) {
    const fl_prog *p = v->p;
    int32_t *st = v->st;
    uint32_t wo = p->win_off[w];
    int32_t cap = p->win_cap[w];
    int32_t head = st[wo], cnt = st[wo + 1];
    /* state may come from elsewhere (a switch of VMs): never index outside the ring */
    if (head < 0 || head >= cap) {
        head = 0;
    }
    if (cnt < 0) {
        cnt = 0;
    } else if (cnt > cap) {
        cnt = cap;
    }
    int32_t n, idx;
    if (fn & 0x80) {
        int32_t limit = p->consts[arg];
        n = 0;
        idx = head;
        while (n < cnt) {
            idx = idx == 0 ? cap - 1 : idx - 1;
            int32_t age = tdiff(v->now, st[wo + 3 + 2 * idx]);
            if (age >= HALF || age > limit) {
                break;
            }
            n++;
        }
    } else {
        n = (int32_t)arg < cnt ? (int32_t)arg : cnt;
    }
    if (n == 0) {
        return NONE;
    }
    uint32_t base = fn & 0x7F;
    idx = head;
    if (base == 3) {  /* rate per minute between the oldest and newest of the n samples */
        if (n < 2) {
            return NONE;
        }
        idx = idx == 0 ? cap - 1 : idx - 1;
        int32_t v0 = st[wo + 2 + 2 * idx], t0 = st[wo + 3 + 2 * idx];
        idx = ((head - n) % cap + cap) % cap;
        int64_t dv = (int64_t)v0 - st[wo + 2 + 2 * idx];
        int32_t dt = tdiff(t0, st[wo + 3 + 2 * idx]);
        if (dt == 0 || dt >= HALF) {
            return NONE;
        }
        return sat(div64(dv * 60000, dt));  /* truncated toward zero, as vm.py */
    }
    int64_t acc = 0;
    for (int32_t j = 0; j < n; j++) {
        idx = idx == 0 ? cap - 1 : idx - 1;
        int32_t x = st[wo + 2 + 2 * idx];
        if (base == 0) {
            acc += x;
        } else if (j == 0 || (base == 1 && x < acc) || (base == 2 && x > acc)) {
            acc = x;
        }
    }
    if (base == 0) {
        /* floor(sum / n), as sum(v // n) + sum(v % n) // n in vm.py */
        int64_t q = div64(acc, n);
        if (q * n != acc && acc < 0) {
            q -= 1;
        }
        acc = q;
    }
    return sat(acc);
}

/* Run code[pc:end]; return the top of the stack (0 if empty). */
static int32_t exec_seg(vm *v, uint32_t pc, uint32_t end) {
    const uint8_t *code = v->code;
    const fl_prog *p = v->p;
    int32_t *st = v->st, *s = v->s;
    uint32_t sp = 0, cap = v->stack_cap;
    while (pc < end) {
        uint8_t op = code[pc];
        if (sp + 1 >= cap && op <= 0x08) {
            v->bad = 1;  /* impossible for a verified program: depth <= max_stack */
            return 0;
        }
        switch (op) {
            case 0x03: {  /* LOAD */
                uint32_t o = 3u * code[pc + 1];
                s[sp++] = (st[o + 2] & 1) ? st[o] : NONE;
                pc += 2;
                break;
            }
            case 0x01: {  /* PUSHK: constants are clamped to the value range, NONE stays NONE */
                int32_t k = p->consts[code[pc + 1]];
                s[sp++] = k == NONE ? NONE : sat(k);
                pc += 2;
                break;
            }
            case 0x02:
                s[sp++] = code[pc + 1];
                pc += 2;
                break;
            case 0x10: case 0x11: case 0x12: case 0x13: case 0x14: case 0x15: {
                int32_t b = s[--sp], a = s[sp - 1], r;
                if (a == NONE || b == NONE) {
                    r = 0;
                } else {
                    switch (op) {
                        case 0x10: r = a < b; break;
                        case 0x11: r = a <= b; break;
                        case 0x12: r = a > b; break;
                        case 0x13: r = a >= b; break;
                        case 0x14: r = a == b; break;
                        default: r = a != b; break;
                    }
                }
                s[sp - 1] = r;
                pc += 1;
                break;
            }
            case 0x18:
                sp--;
                s[sp - 1] = (s[sp - 1] > 0 && s[sp] > 0) ? 1 : 0;
                pc += 1;
                break;
            case 0x19:
                sp--;
                s[sp - 1] = (s[sp - 1] > 0 || s[sp] > 0) ? 1 : 0;
                pc += 1;
                break;
            case 0x1A:
                s[sp - 1] = s[sp - 1] > 0 ? 0 : 1;
                pc += 1;
                break;
            case 0x16: {  /* HYS cell cmp: pops h, t, x */
                sp -= 2;
                int32_t h = s[sp + 1], t = s[sp], x = s[sp - 1], r;
                uint32_t cell = p->hyst_off + code[pc + 1];
                uint8_t cmp = code[pc + 2];
                if (x == NONE || t == NONE || h == NONE) {
                    r = 0;
                } else {
                    int64_t th = t;
                    if (st[cell]) {
                        th = cmp >= 0x12 ? th - h : th + h;
                    }
                    switch (cmp) {
                        case 0x10: r = x < th; break;
                        case 0x11: r = x <= th; break;
                        case 0x12: r = x > th; break;
                        default: r = x >= th; break;
                    }
                }
                st[cell] = r;
                s[sp - 1] = r;
                pc += 3;
                break;
            }
            case 0x05:
                s[sp++] = agg(v, code[pc + 1], code[pc + 2], code[pc + 3]);
                pc += 4;
                break;
            case 0x04: {  /* ABSENT i k */
                int32_t age = tdiff(v->now, st[3u * code[pc + 1] + 1]);
                s[sp++] = (age < HALF && age >= p->consts[code[pc + 2]]) ? 1 : 0;
                pc += 3;
                break;
            }
            case 0x24: {
                int32_t a = s[sp - 1];
                s[sp - 1] = a == NONE ? NONE : sat(-(int64_t)a);
                pc += 1;
                break;
            }
            case 0x20: case 0x21: case 0x22: case 0x23: {
                int32_t b = s[--sp], a = s[sp - 1], r;
                if (a == NONE || b == NONE) {
                    r = NONE;
                } else if (op == 0x20) {
                    r = sat((int64_t)a + b);
                } else if (op == 0x21) {
                    r = sat((int64_t)a - b);
                } else if (op == 0x22) {
                    r = sat(div64((int64_t)a * b, 1000));
                } else if (b == 0) {
                    r = NONE;
                } else {
                    r = sat(div64((int64_t)a * 1000, b));
                }
                s[sp - 1] = r;
                pc += 1;
                break;
            }
            case 0x06:
                s[sp++] = code[pc + 1] == 0 ? v->uptime : v->tod;
                pc += 2;
                break;
            case 0x07:
                s[sp++] = st[p->rule_off + 3u * code[pc + 1]] & 1;
                pc += 2;
                break;
            case 0x08: {
                int32_t t = v->tod, lo = p->consts[code[pc + 1]], hi = p->consts[code[pc + 2]], r;
                if (t == NONE) {
                    r = 0;
                } else if (lo <= hi) {
                    r = lo <= t && t < hi;
                } else {
                    r = t >= lo || t < hi;
                }
                s[sp++] = r;
                pc += 3;
                break;
            }
            case 0x30:
                pc = (uint32_t)code[pc + 1] | ((uint32_t)code[pc + 2] << 8);
                break;
            case 0x31: case 0x32: {
                uint32_t target = (uint32_t)code[pc + 1] | ((uint32_t)code[pc + 2] << 8);
                sp--;
                if ((s[sp] > 0) == (op == 0x32)) {
                    pc = target;
                } else {
                    pc += 3;
                }
                break;
            }
            case 0x40: case 0x41: {
                uint32_t i = code[pc + 1];
                int32_t on = op == 0x40 ? 1 : 0;
                st[3 * i] = on;
                st[3 * i + 2] |= 1;
                emit(v, 1, (int32_t)i, on);
                pc += 2;
                break;
            }
            case 0x42:
                emit(v, 2, code[pc + 1], p->consts[code[pc + 2]]);
                pc += 3;
                break;
            case 0x43:
                emit(v, 3, code[pc + 1], code[pc + 2]);
                pc += 3;
                break;
            case 0x44: case 0x45:
                emit(v, op == 0x44 ? 4 : 5, 0, p->consts[code[pc + 1]]);
                pc += 2;
                break;
            case 0x46: {
                uint32_t o = 3u * code[pc + 1];
                int32_t x = s[--sp];
                st[o] = x;
                if (x == NONE) {
                    st[o + 2] &= ~1;
                } else {
                    st[o + 2] |= 1;
                }
                pc += 2;
                break;
            }
            default:
                v->bad = 1;  /* unreachable for a verified program */
                return 0;
        }
    }
    return sp > 0 ? s[sp - 1] : 0;
}

int fl_vm_run(const fl_prog *p, const uint8_t *blob, size_t blob_len, int32_t *st, size_t st_words,
              int32_t *stack, size_t stack_words, int32_t *out, size_t out_words, int32_t now, int32_t tod,
              int32_t uptime, int first) {
    if (p->size == FL_PROG_REFUSED || blob_len < p->size || st_words < p->state_words || stack_words < (size_t)p->max_stack + 1
        || out_words < 4 * ((size_t)p->n_actions + 1)) {
        return FL_E_ARG;
    }
    /* the blob must be the one that was verified: its stored checksum is the verified CRC-32 */
    const uint8_t *c4 = blob + p->size - 4;
    if (((uint32_t)c4[0] | ((uint32_t)c4[1] << 8) | ((uint32_t)c4[2] << 16) | ((uint32_t)c4[3] << 24)) != p->crc) {
        return FL_E_ARG;
    }
    vm v;
    v.p = p;
    v.code = blob + p->code_at;
    v.st = st;
    v.s = stack;
    v.out = out;
    v.stack_cap = (uint32_t)p->max_stack + 1;
    v.out_cap = (uint32_t)p->n_actions + 1;
    v.n_out = 0;
    v.now = now & MASK;
    v.tod = tod;
    v.uptime = uptime < MAXV ? uptime : MAXV;
    v.cur_rule = 0;
    v.bad = 0;
    now = v.now;
    uint32_t n_in = p->n_inputs, n_win = p->n_windows;
    for (uint32_t i = 0; i < n_in; i++) {
        uint32_t o = 3 * i;
        int32_t fl = st[o + 2];
        if (first && !(fl & 1)) {
            st[o + 1] = now;
        } else if (!(fl & 2)) {
            int32_t age = tdiff(now, st[o + 1]);
            if (age >= HALF || age > MAXDUR) {
                /* quiet for over 24 h: clamp the age so it never wraps, forget old samples */
                st[o + 1] = tdiff(now, MAXDUR);
                for (uint32_t w = 0; w < n_win; w++) {
                    if (p->win_in[w] == i) {
                        st[p->win_off[w] + 1] = 0;
                    }
                }
            }
        }
    }
    for (uint32_t w = 0; w < n_win; w++) {
        uint32_t o = 3u * p->win_in[w];
        if (st[o + 2] & 2) {
            uint32_t wo = p->win_off[w];
            int32_t cap = p->win_cap[w];
            int32_t head = st[wo];
            if (head < 0 || head >= cap) {
                head = 0;
            }
            st[wo + 2 + 2 * head] = st[o];
            st[wo + 3 + 2 * head] = st[o + 1];
            head += 1;
            st[wo] = head == cap ? 0 : head;
            if (st[wo + 1] < cap) {
                st[wo + 1] = st[wo + 1] < 0 ? 1 : st[wo + 1] + 1;
            }
        }
    }
    for (uint32_t r = 0; r < p->n_rules; r++) {
        v.cur_rule = (int32_t)r;
        int32_t c = exec_seg(&v, p->seg[4 * r], p->seg[4 * r + 1]);
        uint32_t ro = p->rule_off + 3 * r;
        int32_t fl = st[ro];
        if (fl & 4) {
            int32_t cd = tdiff(now, st[ro + 2]);
            if (cd < HALF && cd >= p->rcool[r]) {
                fl &= ~4;
            }
        }
        int held = 0;
        if (c > 0) {
            if (!(fl & 2)) {
                fl |= 2;
                st[ro + 1] = now;
            }
            int32_t fo = p->rfor[r];
            int32_t d = tdiff(now, st[ro + 1]);
            if (d < HALF && d >= fo) {
                held = 1;
                st[ro + 1] = tdiff(now, fo);
            }
        } else {
            fl &= ~2;
        }
        if (held) {
            if (!(fl & 5)) {
                fl |= 1;
                if (p->rcool[r] > 0) {
                    fl |= 4;
                }
                st[ro + 2] = now;
                st[ro] = fl;
                exec_seg(&v, p->seg[4 * r + 1], p->seg[4 * r + 2]);
            }
        } else if (fl & 1) {
            fl &= ~1;
            st[ro] = fl;
            exec_seg(&v, p->seg[4 * r + 2], p->seg[4 * r + 3]);
        }
        st[ro] = fl;
    }
    for (uint32_t i = 0; i < n_in; i++) {
        st[3 * i + 2] &= ~2;
    }
    return v.bad ? FL_E_ARG : (int)v.n_out;
}
