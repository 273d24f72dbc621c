/* Fuzz target: the rules verifier and VM. A program the verifier accepts must tick without any
 * out-of-bounds access (exact-size heap buffers under ASan) and emit at most n_actions actions; a
 * program it refuses must never run. Aborts on any broken invariant. */
#include <stdlib.h>
#include <string.h>

#include "fl_core.h"

#define CHECK(c) do { if (!(c)) { abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *blob = malloc(size ? size : 1);
    fl_prog *p = malloc(sizeof(fl_prog));
    fl_vwork *w = malloc(sizeof(fl_vwork));
    CHECK(blob && p && w);
    memcpy(blob, data, size);
    fl_verr e;
    char small[8], msg[200];
    int code = fl_verify(blob, size, p, w, &e);
    CHECK(code >= 0 && code < FL_V_COUNT && code == e.code);
    fl_verify_message(&e, small, sizeof small);
    CHECK(strlen(small) < sizeof small);
    fl_verify_message(&e, msg, sizeof msg);
    CHECK(strlen(msg) > 0);
    int32_t one[4];
    if (code != FL_V_OK) {
        CHECK(fl_vm_run(p, blob, size, one, 4, one, 4, one, 4, 0, FL_NONE, 0, 1) == FL_E_ARG);
    } else {
        size_t sw = p->state_words ? p->state_words : 1;
        int32_t *st = malloc(sw * 4), *stack = malloc((p->max_stack + 1u) * 4);
        int32_t *out = malloc(4u * (p->n_actions + 1u) * 4);
        CHECK(st && stack && out);
        CHECK(fl_vm_init(p, st, p->state_words) == 0);
        uint32_t x = p->crc | 1u, t = x & 0x3FFFFFFF;
        for (int tick = 0; tick < 40; tick++) {
            for (uint32_t i = 0; i < p->n_inputs; i++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if (x & 1) {
                    CHECK(fl_vm_set_input(p, st, i, (int32_t)x, (int32_t)t) == 0);
                }
            }
            int n = fl_vm_run(p, blob, size, st, p->state_words, stack, p->max_stack + 1u, out,
                              4u * (p->n_actions + 1u), (int32_t)t, (x & 8) ? FL_NONE : (int32_t)(x % 86400000u),
                              (int32_t)(x >> 2), tick == 0);
            CHECK(n >= 0 && n <= p->n_actions);
            t += (x >> 8) & 0xFFFFF;
        }
        free(st);
        free(stack);
        free(out);
    }
    free(blob);
    free(p);
    free(w);
    return 0;
}
