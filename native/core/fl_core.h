/* fieldlink native core: CRC16, COBS, the serial frame scanner, the rules verifier and VM.
 *
 * Plain C99, no MicroPython headers, no malloc, no libc calls: every buffer belongs to the caller and
 * every length is checked. Semantics are those of the pure-Python device code (docs/protocol.md,
 * docs/rules.md); tests/native/ checks both byte for byte. */
#ifndef FL_CORE_H
#define FL_CORE_H

#include <stddef.h>
#include <stdint.h>

/* ---- errors (negative return values) ---- */
#define FL_E_SPACE (-1)    /* output buffer too small */
#define FL_E_COBS_ZERO (-2) /* COBS: 0x00 in the encoded data */
#define FL_E_COBS_TRUNC (-3) /* COBS: block length runs past the end */
#define FL_E_SHORT (-4)    /* frame: fewer than 2 bytes after COBS */
#define FL_E_CRC (-5)      /* frame: CRC mismatch */
#define FL_E_ARG (-6)      /* bad argument (size, index) */

/* ---- CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no xor) ---- */
uint16_t fl_crc16(const uint8_t *data, size_t n, uint16_t crc);
/* copy n bytes forward, a word at a time; dst may overlap src only when dst <= src (no libc memcpy) */
void fl_copy(uint8_t *dst, const uint8_t *src, size_t n);
/* ---- CRC-32 (IEEE, zlib) ---- */
uint32_t fl_crc32(const uint8_t *data, size_t n);

/* ---- COBS (byte-identical to PyPI cobs) ---- */
size_t fl_cobs_max_encoded(size_t n);
/* encode n bytes into dst (cap >= fl_cobs_max_encoded(n)); returns the length or FL_E_SPACE */
int32_t fl_cobs_encode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap);
/* decode n bytes (no delimiter) into dst (cap >= n - 1); returns the length or FL_E_* */
int32_t fl_cobs_decode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap);

/* ---- serial frame: COBS(payload || crc16_be) || 0x00 ---- */
size_t fl_frame_max_encoded(size_t payload_len);  /* including the 0x00 */
int32_t fl_frame_encode(const uint8_t *payload, size_t n, uint8_t *dst, size_t cap);
/* decode one body (without the 0x00) into dst (cap >= n - 1); returns the payload length or FL_E_* */
int32_t fl_frame_decode(const uint8_t *body, size_t n, uint8_t *dst, size_t cap);

/* Streaming scanner (fieldlink.frame.FrameDecoder): one block of memory, fl_scan_size(max_frame)
 * bytes, 4-byte aligned: this header, then one buffer of cap bytes (body, payload decoded in place). */
typedef struct {
    uint32_t max_frame, cap, fill, skip;
    uint32_t frames, crc_errors, framing_errors, oversize, bytes_in;
    uint32_t plen;   /* length of the payload delivered by the last fl_scan_feed() returning 1 */
} fl_scanner;
size_t fl_scan_size(uint32_t max_frame);
int fl_scan_init(fl_scanner *s, size_t mem_size, uint32_t max_frame);
void fl_scan_reset(fl_scanner *s);
/* Consume data[*pos:n] until a frame completes. Returns 1 with the payload in fl_scan_payload(s)
 * (s->plen bytes) and *pos just after its 0x00, or 0 when all bytes are consumed. Never fails. */
int fl_scan_feed(fl_scanner *s, const uint8_t *data, size_t n, size_t *pos);
const uint8_t *fl_scan_payload(const fl_scanner *s);

/* ---- rules: limits and layout (fieldlink/rules/opcodes.py) ---- */
#define FL_MAX_RULES 128
#define FL_MAX_INPUTS 64
#define FL_MAX_CONSTS 255
#define FL_MAX_WINDOWS 32
#define FL_MAX_WINDOW 128
#define FL_MAX_STACK 16
#define FL_MAX_CODE 4096
#define FL_MAX_PROGRAM 8192
#define FL_MAX_STATE_WORDS 1536
#define FL_MAXV 0x3FFFFFFF
#define FL_NONE (-0x40000000)

/* fl_prog.size of a program the verifier refused (or is still checking): the VM runs nothing */
#define FL_PROG_REFUSED 0xFFFFFFFFu

/* A verified program: the tables the VM needs, parsed. The code stays in the caller's blob. */
typedef struct {
    uint32_t size, crc;
    uint16_t n_inputs, n_windows, n_consts, n_rules, n_strings, n_hyst;
    uint16_t code_size, max_stack, state_words, n_actions;
    uint16_t rule_off, hyst_off, code_at, str_at;
    uint8_t kind[FL_MAX_INPUTS], init[FL_MAX_INPUTS];
    uint8_t win_in[FL_MAX_WINDOWS], win_cap[FL_MAX_WINDOWS];
    uint16_t win_off[FL_MAX_WINDOWS];
    uint16_t seg[4 * FL_MAX_RULES];
    int32_t rfor[FL_MAX_RULES], rcool[FL_MAX_RULES];
    int32_t consts[FL_MAX_CONSTS];
} fl_prog;

/* Scratch memory for the verifier (no large stack frames on small MCUs). */
typedef struct {
    int8_t depth[FL_MAX_CODE + 1];              /* stack depth recorded at each code offset, -1 none */
    uint8_t boundary[(FL_MAX_CODE + 1 + 7) / 8]; /* bit per offset: an instruction starts there */
    uint8_t hyst_used[256];
} fl_vwork;

/* Why a program was rejected; fl_verify_message() renders the same text as verify.py. */
typedef struct {
    int32_t code;      /* FL_V_* */
    int32_t rule;      /* segment errors: rule index, else -1 */
    int32_t seg;       /* 0 condition, 1 then, 2 else */
    int32_t arg[4];
} fl_verr;

enum {
    FL_V_OK = 0, FL_V_SHORT, FL_V_MAGIC, FL_V_VERSION, FL_V_FLAGS, FL_V_RESERVED, FL_V_SIZE_FIELD,
    FL_V_PROG_LIMIT, FL_V_SECTIONS, FL_V_CHECKSUM, FL_V_INPUTS_LIMIT, FL_V_WINDOWS_LIMIT, FL_V_NO_RULES,
    FL_V_RULES_LIMIT, FL_V_CODE_LIMIT, FL_V_STACK_DECL, FL_V_STR_SHORT, FL_V_STR_LEN, FL_V_STR_ASCII,
    FL_V_STR_TRAIL, FL_V_IN_KIND, FL_V_IN_INIT, FL_V_IN_BOOL, FL_V_IN_NAME, FL_V_IN_RES, FL_V_WIN_INPUT,
    FL_V_WIN_KIND, FL_V_WIN_CAP, FL_V_STATE_FIELD, FL_V_STATE_LIMIT, FL_V_RULE_NAME, FL_V_RULE_RES,
    FL_V_RULE_SEG, FL_V_RULE_NOACT, FL_V_RULE_DUR, FL_V_RULES_COVER, FL_V_UNREACHABLE, FL_V_OPCODE,
    FL_V_PAST_END, FL_V_ACTION_IN_COND, FL_V_CONST, FL_V_PUSHS, FL_V_INPUT, FL_V_SETV_KIND,
    FL_V_RELAY_KIND, FL_V_ABSENT_KIND, FL_V_AGG_FN, FL_V_WINDOW, FL_V_SAMPLES, FL_V_SYSREG, FL_V_RULE,
    FL_V_TOD_RANGE, FL_V_HYS_CELL, FL_V_HYS_REUSE, FL_V_HYS_CMP, FL_V_STRING, FL_V_SEVERITY,
    FL_V_DURATION, FL_V_UNDERFLOW, FL_V_DEPTH, FL_V_BACKJUMP, FL_V_JUMP_OUT, FL_V_DEPTH_MISMATCH,
    FL_V_MID_INSN, FL_V_FINAL_DEPTH, FL_V_STACK_EXCEEDED, FL_V_ACTIONS, FL_V_COUNT
};

/* Verify blob[0:n]. Returns FL_V_OK and fills *p (else p->size = FL_PROG_REFUSED), or the reason code (details in *err). */
int fl_verify(const uint8_t *blob, size_t n, fl_prog *p, fl_vwork *work, fl_verr *err);
/* Render err as verify.py's message into buf (NUL terminated, truncated to cap); returns length. */
size_t fl_verify_message(const fl_verr *err, char *buf, size_t cap);
const char *fl_verify_code_name(int code);

/* struct sizes for bindings that hold these in their own buffers (ctypes, natmod bytearrays) */
size_t fl_sizeof_prog(void);
size_t fl_sizeof_vwork(void);
size_t fl_sizeof_verr(void);

/* ---- rules VM: state is the int32 array of docs/rules.md, shared with the Python VM ---- */
/* st: state_words words; stack: max_stack + 1 words; out: 4 * (n_actions + 1) words. */
int fl_vm_init(const fl_prog *p, int32_t *st, size_t st_words);
int fl_vm_set_input(const fl_prog *p, int32_t *st, uint32_t i, int32_t value, int32_t now);
/* One tick (VM.run). first: nonzero on the VM's first tick. Returns the number of actions in out
 * (4 words each: kind, operand, arg, rule) or FL_E_ARG if a buffer is too small. */
int fl_vm_run(const fl_prog *p, const uint8_t *blob, size_t blob_len, int32_t *st, size_t st_words, int32_t *stack,
              size_t stack_words, int32_t *out, size_t out_words, int32_t now, int32_t tod, int32_t uptime,
              int first);

#endif
