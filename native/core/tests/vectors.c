/* The core's own test vectors: hand-derived expectations from docs/protocol.md and docs/rules.md.
 * Runs on the host (cc, clang sanitizers) and as a bare-metal rv32imc program under qemu
 * (picolibc semihosting). Prints one line per failure and "vectors: N passed, M failed"; exit 0 if
 * all pass. */
#include <stdio.h>
#include <string.h>

#include "fl_core.h"

static int passed, failed;

#define CHECK(cond) do { if (cond) { passed++; } else { failed++; printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); } } while (0)

static int eq(const uint8_t *a, const uint8_t *b, size_t n) {
    return memcmp(a, b, n) == 0;
}

static void test_crc(void) {
    CHECK(fl_crc16((const uint8_t *)"123456789", 9, 0xFFFF) == 0x29B1);  /* catalogue check value */
    CHECK(fl_crc16((const uint8_t *)"", 0, 0xFFFF) == 0xFFFF);
    /* running CRC over two chunks == one pass */
    CHECK(fl_crc16((const uint8_t *)"56789", 5, fl_crc16((const uint8_t *)"1234", 4, 0xFFFF)) == 0x29B1);
    CHECK(fl_crc32((const uint8_t *)"123456789", 9) == 0xCBF43926u);  /* CRC-32/ISO-HDLC check value */
}

static void test_cobs(void) {
    uint8_t out[600], back[600];
    /* docs and fieldlink/cobs.py header */
    CHECK(fl_cobs_encode((const uint8_t *)"", 0, out, sizeof out) == 1 && out[0] == 1);
    static const uint8_t z[] = {0};
    CHECK(fl_cobs_encode(z, 1, out, sizeof out) == 2 && out[0] == 1 && out[1] == 1);
    static const uint8_t a[] = {0x11, 0x22, 0x00, 0x33}, ae[] = {0x03, 0x11, 0x22, 0x02, 0x33};
    CHECK(fl_cobs_encode(a, 4, out, sizeof out) == 5 && eq(out, ae, 5));
    CHECK(fl_cobs_decode(ae, 5, back, sizeof back) == 4 && eq(back, a, 4));
    uint8_t run[254];
    for (int i = 0; i < 254; i++) {
        run[i] = (uint8_t)(i % 255 + 1);
    }
    /* 254 non-zero bytes: one 0xFF block, no trailing block */
    CHECK(fl_cobs_encode(run, 254, out, sizeof out) == 255 && out[0] == 0xFF && eq(out + 1, run, 254));
    CHECK(fl_cobs_decode(out, 255, back, sizeof back) == 254 && eq(back, run, 254));
    /* capacity and malformed input */
    CHECK(fl_cobs_encode(run, 254, out, 254) == FL_E_SPACE);
    static const uint8_t trunc[] = {0x05, 0x11, 0x22}, zero[] = {0x02, 0x00};
    CHECK(fl_cobs_decode(trunc, 3, back, sizeof back) == FL_E_COBS_TRUNC);
    CHECK(fl_cobs_decode(zero, 2, back, sizeof back) == FL_E_COBS_ZERO);
}

/* docs/protocol.md worked example: {"t": 1, "v": 21.5} */
static const uint8_t PAYLOAD[] = {0x82, 0xa1, 0x74, 0x01, 0xa1, 0x76, 0xcb, 0x40, 0x35, 0x80, 0, 0, 0, 0, 0};
static const uint8_t WIRE[] = {0x0b, 0x82, 0xa1, 0x74, 0x01, 0xa1, 0x76, 0xcb, 0x40, 0x35, 0x80, 0x01, 0x01,
                               0x01, 0x01, 0x03, 0x30, 0xa1, 0x00};

static void test_frame(void) {
    uint8_t out[64], dec[64];
    CHECK(fl_frame_encode(PAYLOAD, sizeof PAYLOAD, out, sizeof out) == (int32_t)sizeof WIRE);
    CHECK(eq(out, WIRE, sizeof WIRE));
    CHECK(fl_frame_decode(WIRE, sizeof WIRE - 1, dec, sizeof dec) == (int32_t)sizeof PAYLOAD);
    CHECK(eq(dec, PAYLOAD, sizeof PAYLOAD));
    static const uint8_t empty[] = {0x03, 0xff, 0xff, 0x00};
    CHECK(fl_frame_encode(PAYLOAD, 0, out, sizeof out) == 4 && eq(out, empty, 4));
    uint8_t bad[sizeof WIRE];
    memcpy(bad, WIRE, sizeof WIRE);
    bad[17] ^= 1;
    CHECK(fl_frame_decode(bad, sizeof WIRE - 1, dec, sizeof dec) == FL_E_CRC);
    static const uint8_t one[] = {0x02, 0x41};
    CHECK(fl_frame_decode(one, 2, dec, sizeof dec) == FL_E_SHORT);
}

static uint32_t scan_mem[(2 * 40 + 64) / 4 + 16];

static void test_scanner(void) {
    fl_scanner *s = (fl_scanner *)scan_mem;
    /* max_frame 24: body cap = 26 + 26 // 254 + 1 = 27 bytes */
    CHECK(fl_scan_size(24) <= sizeof scan_mem);
    CHECK(fl_scan_init(s, sizeof scan_mem, 24) == 0 && s->cap == 27);
    uint8_t stream[128];
    size_t n = 0;
    static const uint8_t garbage[] = {0x41, 0x42, 0x43};
    memcpy(stream + n, garbage, 3);  /* garbage runs into the first frame: code 0x41 runs past the body */
    n += 3;
    memcpy(stream + n, WIRE, sizeof WIRE);  /* lost with the garbage */
    n += sizeof WIRE;
    stream[n++] = 0;  /* empty body: ignored */
    memcpy(stream + n, WIRE, sizeof WIRE);  /* delivered */
    n += sizeof WIRE;
    for (int i = 0; i < 30; i++) {
        stream[n++] = 0x55;  /* oversize body: counted once, skipped to the next 0x00 */
    }
    stream[n++] = 0;
    memcpy(stream + n, WIRE, sizeof WIRE);  /* delivered */
    n += sizeof WIRE;
    /* feed one byte at a time: the result must not depend on chunking */
    int frames = 0;
    for (size_t i = 0; i < n; i++) {
        size_t pos = 0;
        while (fl_scan_feed(s, stream + i, 1, &pos)) {
            CHECK(s->plen == sizeof PAYLOAD && eq(fl_scan_payload(s), PAYLOAD, sizeof PAYLOAD));
            frames++;
        }
    }
    CHECK(frames == 2);
    CHECK(s->frames == 2 && s->oversize == 1 && s->framing_errors == 1 && s->crc_errors == 0);
    CHECK(s->bytes_in == n && s->fill == 0 && s->skip == 0);
    /* all at once, fresh scanner */
    fl_scan_init(s, sizeof scan_mem, 24);
    size_t pos = 0;
    frames = 0;
    while (fl_scan_feed(s, stream, n, &pos)) {
        frames++;
    }
    CHECK(frames == 2 && pos == n && s->frames == 2 && s->oversize == 1);
    /* a decoded payload above max_frame is oversize too: 16 zero bytes encode to 17 x 0x01 + crc */
    fl_scan_init(s, sizeof scan_mem, 15);
    uint8_t zeros[16] = {0}, fr[40];
    int32_t fn = fl_frame_encode(zeros, 16, fr, sizeof fr);
    pos = 0;
    CHECK(fn > 0 && fl_scan_feed(s, fr, (size_t)fn, &pos) == 0 && s->oversize == 1 && s->frames == 0);
}

/* ---- rules: the threshold program of tests/device/test_rules_vm.py, assembled here ----
 * strings hot, sht.temperature, relay.fan; inputs sensor(1), relay(2); consts 28000, 1500;
 * cond LOAD 0 PUSHK 0 PUSHK 1 HYS 0 GT; then RON 1; else ROFF 1 */
static uint8_t prog_buf[128];

static size_t put32(uint8_t *b, size_t o, uint32_t v) {
    b[o] = (uint8_t)v;
    b[o + 1] = (uint8_t)(v >> 8);
    b[o + 2] = (uint8_t)(v >> 16);
    b[o + 3] = (uint8_t)(v >> 24);
    return o + 4;
}

static size_t hot_program(int32_t for_ms, int32_t cooldown_ms) {
    static const uint8_t cond[] = {0x03, 0, 0x01, 0, 0x01, 1, 0x16, 0, 0x12};
    static const uint8_t strs[] = {3, 'h', 'o', 't', 15, 's', 'h', 't', '.', 't', 'e', 'm', 'p', 'e', 'r', 'a',
                                   't', 'u', 'r', 'e', 9, 'r', 'e', 'l', 'a', 'y', '.', 'f', 'a', 'n'};
    uint8_t *b = prog_buf;
    memset(b, 0, sizeof prog_buf);
    size_t code_size = sizeof cond + 4, total = 28 + 8 + 8 + 16 + sizeof strs + code_size + 4;
    memcpy(b, "FLRV", 4);
    b[4] = 1;
    b[6] = 2;   /* inputs */
    b[8] = 2;   /* consts */
    b[9] = 1;   /* rules */
    b[10] = 3;  /* strings */
    b[11] = 1;  /* hysteresis cells */
    b[12] = (uint8_t)code_size;
    b[14] = sizeof strs;
    b[16] = 3;  /* max stack */
    b[18] = 3 * 2 + 3 + 1;  /* state words */
    b[20] = 2;  /* actions */
    put32(b, 24, (uint32_t)total);
    size_t o = 28;
    static const uint8_t ins[] = {1, 0xFF, 1, 0, 3, 0xFF, 2, 0};
    memcpy(b + o, ins, 8);
    o += 8;
    o = put32(b, o, 28000);
    o = put32(b, o, 1500);
    b[o] = 0;
    b[o + 2] = sizeof cond;
    b[o + 4] = sizeof cond + 2;
    b[o + 6] = (uint8_t)code_size;
    put32(b, o + 8, (uint32_t)for_ms);
    put32(b, o + 12, (uint32_t)cooldown_ms);
    o += 16;
    memcpy(b + o, strs, sizeof strs);
    o += sizeof strs;
    memcpy(b + o, cond, sizeof cond);
    o += sizeof cond;
    b[o++] = 0x40;
    b[o++] = 1;
    b[o++] = 0x41;
    b[o++] = 1;
    put32(b, o, fl_crc32(b, o));
    return total;
}

static fl_prog prog;
static fl_vwork work;
static int32_t st[16], stk[4], out[12];

static int step(int32_t t, int32_t temp, int has_temp, int first) {
    if (has_temp) {
        fl_vm_set_input(&prog, st, 0, temp, t);
    }
    return fl_vm_run(&prog, prog_buf, sizeof prog_buf, st, 16, stk, 4, out, 12, t, FL_NONE, 0, first);
}

static int is_act(int on) {
    return out[0] == 1 && out[1] == 1 && out[2] == on && out[3] == 0;
}

static void test_rules(void) {
    fl_verr err;
    char msg[120];
    size_t n = hot_program(0, 0);
    CHECK(fl_verify(prog_buf, n, &prog, &work, &err) == FL_V_OK);
    CHECK(prog.state_words == 10 && prog.n_actions == 2 && prog.max_stack == 3);
    CHECK(fl_vm_init(&prog, st, 16) == 0);
    /* hysteresis: on above 28, off at or below 26.5 (test_rules_vm.py) */
    CHECK(step(0, 27000, 1, 1) == 0);
    CHECK(step(1000, 28000, 1, 0) == 0);
    CHECK(step(2000, 28001, 1, 0) == 1 && is_act(1));
    CHECK(st[3] == 1 && (st[5] & 1));  /* relay input follows the command */
    CHECK(step(3000, 27000, 1, 0) == 0);
    CHECK(step(4000, 26501, 1, 0) == 0);
    CHECK(step(5000, 26500, 1, 0) == 1 && is_act(0));
    CHECK(step(6000, 27000, 1, 0) == 0);
    CHECK(step(7000, 28500, 1, 0) == 1 && is_act(1));
    /* cooldown 10 s */
    n = hot_program(0, 10000);
    CHECK(fl_verify(prog_buf, n, &prog, &work, &err) == FL_V_OK);
    fl_vm_init(&prog, st, 16);
    CHECK(step(0, 29000, 1, 1) == 1 && is_act(1));
    CHECK(step(2000, 20000, 1, 0) == 1 && is_act(0));
    CHECK(step(3000, 29000, 1, 0) == 0);
    CHECK(step(9999, 0, 0, 0) == 0);
    CHECK(step(10000, 0, 0, 0) == 1 && is_act(1));
    /* another blob than the verified one is refused */
    prog_buf[n - 1] ^= 1;
    CHECK(fl_vm_run(&prog, prog_buf, sizeof prog_buf, st, 16, stk, 4, out, 12, 0, FL_NONE, 0, 0) == FL_E_ARG);
    prog_buf[n - 1] ^= 1;
    /* buffers too small are refused, not overrun */
    CHECK(fl_vm_run(&prog, prog_buf, sizeof prog_buf, st, 9, stk, 4, out, 12, 0, FL_NONE, 0, 0) == FL_E_ARG);
    CHECK(fl_vm_run(&prog, prog_buf, sizeof prog_buf, st, 16, stk, 3, out, 12, 0, FL_NONE, 0, 0) == FL_E_ARG);
    CHECK(fl_vm_run(&prog, prog_buf, sizeof prog_buf, st, 16, stk, 4, out, 11, 0, FL_NONE, 0, 0) == FL_E_ARG);
    /* rejections with verify.py's messages; the file is 28 + 8 + 8 + 16 + 30 + 13 + 4 = 107 bytes */
    n = hot_program(0, 0);
    prog_buf[0] = 'X';
    CHECK(fl_verify(prog_buf, n, &prog, &work, &err) == FL_V_MAGIC);
    /* a refused program never runs, even in a prog struct that held a valid one */
    CHECK(fl_vm_run(&prog, prog_buf, sizeof prog_buf, st, 16, stk, 4, out, 12, 0, FL_NONE, 0, 0) == FL_E_ARG);
    CHECK(fl_vm_init(&prog, st, 16) == FL_E_ARG);
    n = hot_program(0, 0);
    CHECK(fl_verify(prog_buf, n - 1, &prog, &work, &err) == FL_V_SIZE_FIELD);
    fl_verify_message(&err, msg, sizeof msg);
    CHECK(strcmp(msg, "size field says 107 bytes, program has 106") == 0);
    n = hot_program(0, 0);
    prog_buf[n - 1] ^= 0x80;
    CHECK(fl_verify(prog_buf, n, &prog, &work, &err) == FL_V_CHECKSUM);
    n = hot_program(0, 0);
    prog_buf[n - 4 - 4 - 9 + 8] = 0x10;  /* HYS comparison GT -> LT is fine; 0x17 is not */
    prog_buf[n - 4 - 4 - 9 + 8] = 0x17;
    put32(prog_buf, n - 4, fl_crc32(prog_buf, n - 4));
    CHECK(fl_verify(prog_buf, n, &prog, &work, &err) == FL_V_HYS_CMP);
    fl_verify_message(&err, msg, sizeof msg);
    CHECK(strcmp(msg, "rule 0 condition: hysteresis comparison 0x17 invalid at 6") == 0);
    n = hot_program(86400001, 0);
    CHECK(fl_verify(prog_buf, n, &prog, &work, &err) == FL_V_RULE_DUR);
    fl_verify_message(&err, msg, sizeof msg);
    CHECK(strcmp(msg, "rule 0: for/cooldown outside 0..86400000 ms") == 0);
}

int main(void) {
    test_crc();
    test_cobs();
    test_frame();
    test_scanner();
    test_rules();
    printf("vectors: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
