/* Bounded random driver for the fuzz targets when libFuzzer is not available (gcc, other hosts):
 *   fuzz_x [-n ITERATIONS] [-s SEED] SEED_FILE...
 * runs every seed file, then ITERATIONS mutations (overwrite / flip / insert / delete bytes) of
 * randomly chosen seeds through LLVMFuzzerTestOneInput. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

#define MAX_SEEDS 256
#define MAX_LEN 16384

static unsigned x = 2463534242u;

static unsigned rnd(void) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
}

int main(int argc, char **argv) {
    static unsigned char seeds[MAX_SEEDS][MAX_LEN], buf[MAX_LEN + 8];
    static size_t lens[MAX_SEEDS];
    int ns = 0;
    long iters = 10000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc) {
            iters = atol(argv[++i]);
        } else if (!strcmp(argv[i], "-s") && i + 1 < argc) {
            x = (unsigned)atol(argv[++i]) | 1u;
        } else if (ns < MAX_SEEDS) {
            FILE *f = fopen(argv[i], "rb");
            if (!f) {
                perror(argv[i]);
                return 2;
            }
            lens[ns] = fread(seeds[ns], 1, MAX_LEN, f);
            fclose(f);
            LLVMFuzzerTestOneInput(seeds[ns], lens[ns]);
            ns++;
        }
    }
    for (long it = 0; it < iters; it++) {
        size_t n = 0;
        if (ns) {
            int k = (int)(rnd() % (unsigned)ns);
            n = lens[k];
            memcpy(buf, seeds[k], n);
        }
        int muts = 1 + (int)(rnd() % 4);
        for (int m = 0; m < muts; m++) {
            size_t i = n ? rnd() % n : 0;
            switch (rnd() % 4) {
                case 0: if (n) buf[i] = (unsigned char)rnd(); break;
                case 1: if (n) buf[i] ^= (unsigned char)(1u << (rnd() % 8)); break;
                case 2: if (n < MAX_LEN) { memmove(buf + i + 1, buf + i, n - i); buf[i] = (unsigned char)rnd(); n++; } break;
                default: if (n) { memmove(buf + i, buf + i + 1, n - i - 1); n--; } break;
            }
        }
        LLVMFuzzerTestOneInput(buf, n);
    }
    printf("fuzz: %d seeds, %ld mutations, no failure\n", ns, iters);
    return 0;
}
