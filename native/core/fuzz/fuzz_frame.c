/* Fuzz target: the streaming frame scanner and COBS. libFuzzer entry point; fuzz_driver.c provides a
 * bounded random main() for compilers without libFuzzer. Aborts on any broken invariant.
 * Input: byte 0 -> max_frame, byte 1 -> chunk size, the rest is the serial stream. */
#include <stdlib.h>
#include <string.h>

#include "fl_core.h"

#define CHECK(c) do { if (!(c)) { abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) {
        return 0;
    }
    uint32_t max_frame = 1u + (uint32_t)data[0] * 4u;
    size_t chunk = 1u + data[1];
    const uint8_t *stream = data + 2;
    size_t n = size - 2;
    size_t mem_size = fl_scan_size(max_frame);
    fl_scanner *s = malloc(mem_size);  /* exact size: ASan sees any write past it */
    CHECK(s && fl_scan_init(s, mem_size, max_frame) == 0);
    uint8_t *scratch = malloc(fl_frame_max_encoded(max_frame) + 1);
    uint8_t *back = malloc(fl_frame_max_encoded(max_frame) + 1);
    CHECK(scratch && back);
    for (size_t off = 0; off < n; off += chunk) {
        size_t len = n - off < chunk ? n - off : chunk;
        size_t pos = 0;
        while (fl_scan_feed(s, stream + off, len, &pos)) {
            const uint8_t *p = fl_scan_payload(s);
            CHECK(s->plen <= max_frame);
            /* a delivered payload re-encodes to a frame that decodes to itself */
            int32_t fn = fl_frame_encode(p, s->plen, scratch, fl_frame_max_encoded(max_frame) + 1);
            CHECK(fn > 0 && scratch[fn - 1] == 0);
            CHECK(fl_frame_decode(scratch, (size_t)fn - 1, back, (size_t)fn) == (int32_t)s->plen);
            CHECK(memcmp(back, p, s->plen) == 0);
        }
        CHECK(pos == len && s->fill <= s->cap);
    }
    /* every non-empty body counted exactly once (the unfinished last one only if already oversize) */
    uint32_t bodies = 0, run = 0;
    for (size_t i = 0; i < n; i++) {
        if (stream[i] == 0) {
            bodies += run > 0;
            run = 0;
        } else {
            run++;
        }
    }
    uint32_t counted = s->frames + s->crc_errors + s->framing_errors + s->oversize;
    CHECK(counted == bodies + (run > 0 && s->skip ? 1u : 0u));
    CHECK(s->bytes_in == n);
    /* COBS round trip of the raw input, and decode of it as a body never overruns */
    size_t cap = fl_cobs_max_encoded(n);
    uint8_t *enc = malloc(cap + 1), *dec = malloc(cap + 1);
    CHECK(enc && dec);
    int32_t en = fl_cobs_encode(stream, n, enc, cap);
    CHECK(en > 0 && (size_t)en <= cap && memchr(enc, 0, (size_t)en) == NULL);
    CHECK(fl_cobs_decode(enc, (size_t)en, dec, (size_t)en) == (int32_t)n && memcmp(dec, stream, n) == 0);
    int32_t dn = fl_cobs_decode(stream, n, dec, n ? n - 1 : 0);  /* the smallest capacity it accepts */
    CHECK(dn < 0 || (size_t)dn + (n > 0) <= n);
    free(enc);
    free(dec);
    free(scratch);
    free(back);
    free(s);
    return 0;
}
