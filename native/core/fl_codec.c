/* CRC16/CCITT-FALSE, CRC-32, COBS, serial frames and the streaming frame scanner. See fl_core.h. */
#include "fl_core.h"

static const uint16_t crc16_table[256] = {
    0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7,
    0x8108, 0x9129, 0xa14a, 0xb16b, 0xc18c, 0xd1ad, 0xe1ce, 0xf1ef,
    0x1231, 0x0210, 0x3273, 0x2252, 0x52b5, 0x4294, 0x72f7, 0x62d6,
    0x9339, 0x8318, 0xb37b, 0xa35a, 0xd3bd, 0xc39c, 0xf3ff, 0xe3de,
    0x2462, 0x3443, 0x0420, 0x1401, 0x64e6, 0x74c7, 0x44a4, 0x5485,
    0xa56a, 0xb54b, 0x8528, 0x9509, 0xe5ee, 0xf5cf, 0xc5ac, 0xd58d,
    0x3653, 0x2672, 0x1611, 0x0630, 0x76d7, 0x66f6, 0x5695, 0x46b4,
    0xb75b, 0xa77a, 0x9719, 0x8738, 0xf7df, 0xe7fe, 0xd79d, 0xc7bc,
    0x48c4, 0x58e5, 0x6886, 0x78a7, 0x0840, 0x1861, 0x2802, 0x3823,
    0xc9cc, 0xd9ed, 0xe98e, 0xf9af, 0x8948, 0x9969, 0xa90a, 0xb92b,
    0x5af5, 0x4ad4, 0x7ab7, 0x6a96, 0x1a71, 0x0a50, 0x3a33, 0x2a12,
    0xdbfd, 0xcbdc, 0xfbbf, 0xeb9e, 0x9b79, 0x8b58, 0xbb3b, 0xab1a,
    0x6ca6, 0x7c87, 0x4ce4, 0x5cc5, 0x2c22, 0x3c03, 0x0c60, 0x1c41,
    0xedae, 0xfd8f, 0xcdec, 0xddcd, 0xad2a, 0xbd0b, 0x8d68, 0x9d49,
    0x7e97, 0x6eb6, 0x5ed5, 0x4ef4, 0x3e13, 0x2e32, 0x1e51, 0x0e70,
    0xff9f, 0xefbe, 0xdfdd, 0xcffc, 0xbf1b, 0xaf3a, 0x9f59, 0x8f78,
    0x9188, 0x81a9, 0xb1ca, 0xa1eb, 0xd10c, 0xc12d, 0xf14e, 0xe16f,
    0x1080, 0x00a1, 0x30c2, 0x20e3, 0x5004, 0x4025, 0x7046, 0x6067,
    0x83b9, 0x9398, 0xa3fb, 0xb3da, 0xc33d, 0xd31c, 0xe37f, 0xf35e,
    0x02b1, 0x1290, 0x22f3, 0x32d2, 0x4235, 0x5214, 0x6277, 0x7256,
    0xb5ea, 0xa5cb, 0x95a8, 0x8589, 0xf56e, 0xe54f, 0xd52c, 0xc50d,
    0x34e2, 0x24c3, 0x14a0, 0x0481, 0x7466, 0x6447, 0x5424, 0x4405,
    0xa7db, 0xb7fa, 0x8799, 0x97b8, 0xe75f, 0xf77e, 0xc71d, 0xd73c,
    0x26d3, 0x36f2, 0x0691, 0x16b0, 0x6657, 0x7676, 0x4615, 0x5634,
    0xd94c, 0xc96d, 0xf90e, 0xe92f, 0x99c8, 0x89e9, 0xb98a, 0xa9ab,
    0x5844, 0x4865, 0x7806, 0x6827, 0x18c0, 0x08e1, 0x3882, 0x28a3,
    0xcb7d, 0xdb5c, 0xeb3f, 0xfb1e, 0x8bf9, 0x9bd8, 0xabbb, 0xbb9a,
    0x4a75, 0x5a54, 0x6a37, 0x7a16, 0x0af1, 0x1ad0, 0x2ab3, 0x3a92,
    0xfd2e, 0xed0f, 0xdd6c, 0xcd4d, 0xbdaa, 0xad8b, 0x9de8, 0x8dc9,
    0x7c26, 0x6c07, 0x5c64, 0x4c45, 0x3ca2, 0x2c83, 0x1ce0, 0x0cc1,
    0xef1f, 0xff3e, 0xcf5d, 0xdf7c, 0xaf9b, 0xbfba, 0x8fd9, 0x9ff8,
    0x6e17, 0x7e36, 0x4e55, 0x5e74, 0x2e93, 0x3eb2, 0x0ed1, 0x1ef0
};

/* two bytes per step: crc16_table2[x] is the CRC register after the bytes x, 0 from state 0, so for
 * v = crc ^ (b0 << 8 | b1) the new register is table2[v >> 8] ^ table[v & 0xFF] (the CRC is linear);
 * the two lookups are independent, which halves the dependency chain of the byte-wise loop */
static const uint16_t crc16_table2[256] = {
    0x0000, 0x3331, 0x6662, 0x5553, 0xccc4, 0xfff5, 0xaaa6, 0x9997,
    0x89a9, 0xba98, 0xefcb, 0xdcfa, 0x456d, 0x765c, 0x230f, 0x103e,
    0x0373, 0x3042, 0x6511, 0x5620, 0xcfb7, 0xfc86, 0xa9d5, 0x9ae4,
    0x8ada, 0xb9eb, 0xecb8, 0xdf89, 0x461e, 0x752f, 0x207c, 0x134d,
    0x06e6, 0x35d7, 0x6084, 0x53b5, 0xca22, 0xf913, 0xac40, 0x9f71,
    0x8f4f, 0xbc7e, 0xe92d, 0xda1c, 0x438b, 0x70ba, 0x25e9, 0x16d8,
    0x0595, 0x36a4, 0x63f7, 0x50c6, 0xc951, 0xfa60, 0xaf33, 0x9c02,
    0x8c3c, 0xbf0d, 0xea5e, 0xd96f, 0x40f8, 0x73c9, 0x269a, 0x15ab,
    0x0dcc, 0x3efd, 0x6bae, 0x589f, 0xc108, 0xf239, 0xa76a, 0x945b,
    0x8465, 0xb754, 0xe207, 0xd136, 0x48a1, 0x7b90, 0x2ec3, 0x1df2,
    0x0ebf, 0x3d8e, 0x68dd, 0x5bec, 0xc27b, 0xf14a, 0xa419, 0x9728,
    0x8716, 0xb427, 0xe174, 0xd245, 0x4bd2, 0x78e3, 0x2db0, 0x1e81,
    0x0b2a, 0x381b, 0x6d48, 0x5e79, 0xc7ee, 0xf4df, 0xa18c, 0x92bd,
    0x8283, 0xb1b2, 0xe4e1, 0xd7d0, 0x4e47, 0x7d76, 0x2825, 0x1b14,
    0x0859, 0x3b68, 0x6e3b, 0x5d0a, 0xc49d, 0xf7ac, 0xa2ff, 0x91ce,
    0x81f0, 0xb2c1, 0xe792, 0xd4a3, 0x4d34, 0x7e05, 0x2b56, 0x1867,
    0x1b98, 0x28a9, 0x7dfa, 0x4ecb, 0xd75c, 0xe46d, 0xb13e, 0x820f,
    0x9231, 0xa100, 0xf453, 0xc762, 0x5ef5, 0x6dc4, 0x3897, 0x0ba6,
    0x18eb, 0x2bda, 0x7e89, 0x4db8, 0xd42f, 0xe71e, 0xb24d, 0x817c,
    0x9142, 0xa273, 0xf720, 0xc411, 0x5d86, 0x6eb7, 0x3be4, 0x08d5,
    0x1d7e, 0x2e4f, 0x7b1c, 0x482d, 0xd1ba, 0xe28b, 0xb7d8, 0x84e9,
    0x94d7, 0xa7e6, 0xf2b5, 0xc184, 0x5813, 0x6b22, 0x3e71, 0x0d40,
    0x1e0d, 0x2d3c, 0x786f, 0x4b5e, 0xd2c9, 0xe1f8, 0xb4ab, 0x879a,
    0x97a4, 0xa495, 0xf1c6, 0xc2f7, 0x5b60, 0x6851, 0x3d02, 0x0e33,
    0x1654, 0x2565, 0x7036, 0x4307, 0xda90, 0xe9a1, 0xbcf2, 0x8fc3,
    0x9ffd, 0xaccc, 0xf99f, 0xcaae, 0x5339, 0x6008, 0x355b, 0x066a,
    0x1527, 0x2616, 0x7345, 0x4074, 0xd9e3, 0xead2, 0xbf81, 0x8cb0,
    0x9c8e, 0xafbf, 0xfaec, 0xc9dd, 0x504a, 0x637b, 0x3628, 0x0519,
    0x10b2, 0x2383, 0x76d0, 0x45e1, 0xdc76, 0xef47, 0xba14, 0x8925,
    0x991b, 0xaa2a, 0xff79, 0xcc48, 0x55df, 0x66ee, 0x33bd, 0x008c,
    0x13c1, 0x20f0, 0x75a3, 0x4692, 0xdf05, 0xec34, 0xb967, 0x8a56,
    0x9a68, 0xa959, 0xfc0a, 0xcf3b, 0x56ac, 0x659d, 0x30ce, 0x03ff

};

uint16_t fl_crc16(const uint8_t *data, size_t n, uint16_t crc) {
    size_t i = 0;
    for (; i + 1 < n; i += 2) {
        uint32_t v = crc ^ (((uint32_t)data[i] << 8) | data[i + 1]);
        crc = (uint16_t)(crc16_table2[v >> 8] ^ crc16_table[v & 0xFF]);
    }
    if (i < n) {
        crc = (uint16_t)((crc << 8) ^ crc16_table[((crc >> 8) ^ data[i]) & 0xFF]);
    }
    return crc;
}

/* nibble table: 16 words instead of 256, the program checksum is computed once per load */
static const uint32_t crc32_nib[16] = {
    0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4, 0x4db26158, 0x5005713c,
    0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c, 0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c,
};

uint32_t fl_crc32(const uint8_t *data, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= data[i];
        c = (c >> 4) ^ crc32_nib[c & 15];
        c = (c >> 4) ^ crc32_nib[c & 15];
    }
    return c ^ 0xFFFFFFFFu;
}

size_t fl_cobs_max_encoded(size_t n) {
    return n + n / 254 + 1;
}

/* COBS encoder state: blocks of up to 254 non-zero bytes; after a full block (code 0xFF) the next one
 * is opened only if more input follows, so a final run of exactly 254 bytes gets no empty trailing
 * block (as the PyPI library). Runs are copied in a tight loop, no per-byte state changes. */
typedef struct {
    uint8_t *dst;
    size_t o, cp;
    uint32_t code;
    int open;
} cobs_enc;

static void enc_init(cobs_enc *e, uint8_t *dst) {
    e->dst = dst;
    e->cp = 0;
    e->o = 1;
    e->code = 1;
    e->open = 1;
}

static void enc_bytes(cobs_enc *e, const uint8_t *src, size_t n) {
    uint8_t *dst = e->dst;
    size_t o = e->o, cp = e->cp, i = 0;
    uint32_t code = e->code;
    int open = e->open;
    while (i < n) {
        if (!open) {
            cp = o++;
            code = 1;
            open = 1;
        }
        size_t lim = n - i, k = 0;
        if (lim > 255u - code) {
            lim = 255u - code;
        }
        const uint8_t *s = src + i;
        uint8_t *d = dst + o;
        while (k < lim && s[k] != 0) {
            d[k] = s[k];
            k++;
        }
        o += k;
        i += k;
        code += (uint32_t)k;
        if (code == 0xFF) {
            dst[cp] = 0xFF;
            open = 0;
        } else if (i < n) {  /* a zero ends the block */
            dst[cp] = (uint8_t)code;
            cp = o++;
            code = 1;
            i++;
        }
    }
    e->o = o;
    e->cp = cp;
    e->code = code;
    e->open = open;
}

static size_t enc_finish(cobs_enc *e) {
    if (e->open) {
        e->dst[e->cp] = (uint8_t)e->code;
    }
    return e->o;
}

int32_t fl_cobs_encode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap) {
    if (n > 0x3FFFFFFF || cap < fl_cobs_max_encoded(n)) {
        return FL_E_SPACE;
    }
    cobs_enc e;
    enc_init(&e, dst);
    enc_bytes(&e, src, n);
    return (int32_t)enc_finish(&e);
}

static int32_t cobs_decode_nz(const uint8_t *src, size_t n, uint8_t *dst) {
    /* src[0:n] holds no 0x00 except possibly as a length code (rejected); dst has n bytes */
    size_t i = 0, o = 0;
    while (i < n) {
        uint8_t code = src[i];
        if (code == 0) {
            return FL_E_COBS_ZERO;
        }
        size_t j = i + code;
        if (j > n) {
            return FL_E_COBS_TRUNC;
        }
        for (size_t k = i + 1; k < j; k++) {
            dst[o++] = src[k];
        }
        i = j;
        if (code != 0xFF && i < n) {
            dst[o++] = 0;
        }
    }
    return (int32_t)o;
}

int32_t fl_cobs_decode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap) {
    /* every block of c bytes decodes to at most c bytes, the last one to c - 1 */
    if (n > 0x3FFFFFFF || (n > 0 && cap < n - 1)) {
        return FL_E_SPACE;
    }
    for (size_t i = 0; i < n; i++) {
        if (src[i] == 0) {
            return FL_E_COBS_ZERO;
        }
    }
    return cobs_decode_nz(src, n, dst);
}

size_t fl_frame_max_encoded(size_t payload_len) {
    return fl_cobs_max_encoded(payload_len + 2) + 1;
}

/* COBS over payload followed by the two CRC bytes, without copying the payload. */
int32_t fl_frame_encode(const uint8_t *payload, size_t n, uint8_t *dst, size_t cap) {
    if (n > 0x3FFFFFF0 || cap < fl_frame_max_encoded(n)) {
        return FL_E_SPACE;
    }
    uint16_t crc = fl_crc16(payload, n, 0xFFFF);
    uint8_t tail[2] = {(uint8_t)(crc >> 8), (uint8_t)(crc & 0xFF)};
    cobs_enc e;
    enc_init(&e, dst);
    enc_bytes(&e, payload, n);
    enc_bytes(&e, tail, 2);
    size_t o = enc_finish(&e);
    dst[o++] = 0;
    return (int32_t)o;
}

/* COBS-decode src[0:m] (no 0x00 in it except as a bad length code) into dst -- which may be src itself:
 * the output never overtakes the input -- then check the CRC: the CRC of payload || crc_be is 0 exactly
 * when the appended CRC matches (no reflection, no final xor). Returns the payload length,
 * FL_E_COBS_* / FL_E_SHORT (framing) or FL_E_CRC. */
static int32_t decode_check(const uint8_t *src, size_t m, uint8_t *dst) {
    size_t i = 0, o = 0;
    while (i < m) {
        uint32_t code = src[i];
        if (code == 0) {
            return FL_E_COBS_ZERO;
        }
        size_t j = i + code;
        if (j > m) {
            return FL_E_COBS_TRUNC;
        }
        for (size_t k = i + 1; k < j; k++) {
            dst[o++] = src[k];
        }
        i = j;
        if (code != 0xFF && i < m) {
            dst[o++] = 0;
        }
    }
    if (o < 2) {
        return FL_E_SHORT;
    }
    if (fl_crc16(dst, o, 0xFFFF) != 0) {
        return FL_E_CRC;
    }
    return (int32_t)(o - 2);
}

int32_t fl_frame_decode(const uint8_t *body, size_t n, uint8_t *dst, size_t cap) {
    if (n > 0x3FFFFFFF || (n > 0 && cap < n - 1)) {
        return FL_E_SPACE;
    }
    for (size_t i = 0; i < n; i++) {
        if (body[i] == 0) {
            return FL_E_COBS_ZERO;
        }
    }
    return decode_check(body, n, dst);
}

/* ---- streaming scanner ----
 * One buffer of cap bytes: a body split over several chunks collects there and is decoded in place;
 * a body that lies whole inside one chunk is decoded straight from the chunk into it. */

#define SCAN_HDR ((sizeof(fl_scanner) + 3u) & ~(size_t)3u)

size_t fl_scan_size(uint32_t max_frame) {
    if (max_frame < 1 || max_frame > 0x1000000) {
        return 0;
    }
    return SCAN_HDR + fl_cobs_max_encoded((size_t)max_frame + 2);
}

static uint8_t *scan_buf(fl_scanner *s) {
    return (uint8_t *)s + SCAN_HDR;
}

const uint8_t *fl_scan_payload(const fl_scanner *s) {
    return (const uint8_t *)s + SCAN_HDR;
}

int fl_scan_init(fl_scanner *s, size_t mem_size, uint32_t max_frame) {
    size_t need = fl_scan_size(max_frame);
    if (need == 0 || mem_size < need) {
        return FL_E_ARG;
    }
    s->max_frame = max_frame;
    s->cap = (uint32_t)fl_cobs_max_encoded((size_t)max_frame + 2);
    s->fill = 0;
    s->skip = 0;
    s->frames = s->crc_errors = s->framing_errors = s->oversize = s->bytes_in = 0;
    s->plen = 0;
    return 0;
}

void fl_scan_reset(fl_scanner *s) {
    s->fill = 0;
    s->skip = 0;
}

/* A complete body src[0:m]: decode and check it, count the outcome; 1 if a payload is delivered. */
static int scan_finish(fl_scanner *s, const uint8_t *src, uint32_t m) {
    int32_t r = decode_check(src, m, scan_buf(s));
    if (r == FL_E_CRC) {
        s->crc_errors++;
        return 0;
    }
    if (r < 0) {
        s->framing_errors++;
        return 0;
    }
    if ((uint32_t)r > s->max_frame) {
        s->oversize++;
        return 0;
    }
    s->frames++;
    s->plen = (uint32_t)r;
    return 1;
}

int fl_scan_feed(fl_scanner *s, const uint8_t *data, size_t n, size_t *pos) {
    size_t p = *pos;
    uint8_t *buf = scan_buf(s);
    while (p < n) {
        /* one run of non-zero bytes, then (maybe) its delimiter */
        size_t z = p;
        while (z < n && data[z] != 0) {
            z++;
        }
        size_t k = z - p;
        s->bytes_in += (uint32_t)k;
        if (z < n && s->fill == 0 && !s->skip) {
            /* the whole body is in this chunk: no copy into the buffer first */
            s->bytes_in++;
            if (k > s->cap) {
                s->oversize++;
            } else if (k && scan_finish(s, data + p, (uint32_t)k)) {
                *pos = z + 1;
                return 1;
            }
            p = z + 1;
            continue;
        }
        if (k && !s->skip) {
            if ((size_t)s->fill + k > s->cap) {
                s->skip = 1;  /* oversize: drop the rest of this body without buffering it */
                s->fill = 0;
                s->oversize++;
            } else {
                uint32_t f = s->fill;
                for (size_t i = 0; i < k; i++) {
                    buf[f + i] = data[p + i];
                }
                s->fill = f + (uint32_t)k;
            }
        }
        if (z == n) {
            p = n;
            break;
        }
        s->bytes_in++;
        p = z + 1;
        if (s->skip) {
            s->skip = 0;
        } else if (s->fill) {
            uint32_t m = s->fill;
            s->fill = 0;
            if (scan_finish(s, buf, m)) {
                *pos = p;
                return 1;
            }
        }
    }
    *pos = p;
    return 0;
}
