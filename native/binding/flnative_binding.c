/* flnative's Python-facing functions (#included, never compiled on its own: a .c file so that
 * MicroPython's qstr/error-text scanner attributes its strings to a C source), shared by the dynamic native module (native/natmod/flnative.c,
 * py/dynruntime.h) and the firmware user C module (native/usermod/flnative_mod.c, py/runtime.h).
 * Include after the MicroPython headers and fl_core.h. A thin layer: argument unpacking, buffers from
 * the caller (bytearray / array('i')), small ints back. The hot calls (crc16, scan_feed, vm_set_input,
 * vm_run, *_into) allocate nothing. */
#ifndef FLNATIVE_BINDING_C
#define FLNATIVE_BINDING_C

#define WORK_ERR_OFF ((sizeof(fl_vwork) + 7u) & ~(size_t)7u)

static void *buf_rw(mp_obj_t o, size_t need, mp_buffer_info_t *bi) {
    mp_get_buffer_raise(o, bi, MP_BUFFER_RW);
    if (bi->len < need || ((uintptr_t)bi->buf & 3u)) {
        mp_raise_ValueError(MP_ERROR_TEXT("buffer too small or unaligned"));
    }
    return bi->buf;
}

static mp_obj_t crc16(size_t n_args, const mp_obj_t *args) {
    mp_buffer_info_t bi;
    mp_get_buffer_raise(args[0], &bi, MP_BUFFER_READ);
    mp_int_t crc = n_args > 1 ? mp_obj_get_int(args[1]) : 0xFFFF;
    if (crc < 0 || crc > 0xFFFF) {
        mp_raise_ValueError(MP_ERROR_TEXT("crc must be 0..0xFFFF"));
    }
    return mp_obj_new_int(fl_crc16(bi.buf, bi.len, (uint16_t)crc));
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(crc16_obj, 1, 2, crc16);

/* cobs_encode_into(src, dst, off) -> end offset; dst must hold max_encoded(len(src)) from off */
static mp_obj_t cobs_encode_into(mp_obj_t src_o, mp_obj_t dst_o, mp_obj_t off_o) {
    mp_buffer_info_t s, d;
    mp_get_buffer_raise(src_o, &s, MP_BUFFER_READ);
    mp_get_buffer_raise(dst_o, &d, MP_BUFFER_WRITE);
    mp_int_t off = mp_obj_get_int(off_o);
    if (off < 0 || (size_t)off > d.len) {
        mp_raise_ValueError(MP_ERROR_TEXT("offset"));
    }
    int32_t n = fl_cobs_encode(s.buf, s.len, (uint8_t *)d.buf + off, d.len - off);
    if (n < 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("buffer too small"));
    }
    return mp_obj_new_int(off + n);
}
static MP_DEFINE_CONST_FUN_OBJ_3(cobs_encode_into_obj, cobs_encode_into);

/* cobs_decode_into(src, n, dst) -> decoded length, or a negative FL_E_* code */
static mp_obj_t cobs_decode_into(mp_obj_t src_o, mp_obj_t n_o, mp_obj_t dst_o) {
    mp_buffer_info_t s, d;
    mp_get_buffer_raise(src_o, &s, MP_BUFFER_READ);
    mp_get_buffer_raise(dst_o, &d, MP_BUFFER_WRITE);
    mp_int_t n = mp_obj_get_int(n_o);
    if (n < 0 || (size_t)n > s.len) {
        mp_raise_ValueError(MP_ERROR_TEXT("length"));
    }
    return mp_obj_new_int(fl_cobs_decode(s.buf, (size_t)n, d.buf, d.len));
}
static MP_DEFINE_CONST_FUN_OBJ_3(cobs_decode_into_obj, cobs_decode_into);

/* frame_encode_into(payload, dst) -> frame length including the 0x00 */
static mp_obj_t frame_encode_into(mp_obj_t src_o, mp_obj_t dst_o) {
    mp_buffer_info_t s, d;
    mp_get_buffer_raise(src_o, &s, MP_BUFFER_READ);
    mp_get_buffer_raise(dst_o, &d, MP_BUFFER_WRITE);
    int32_t n = fl_frame_encode(s.buf, s.len, d.buf, d.len);
    if (n < 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("buffer too small"));
    }
    return mp_obj_new_int(n);
}
static MP_DEFINE_CONST_FUN_OBJ_2(frame_encode_into_obj, frame_encode_into);

/* frame_decode_into(body, dst) -> payload length, or a negative FL_E_* code */
static mp_obj_t frame_decode_into(mp_obj_t src_o, mp_obj_t dst_o) {
    mp_buffer_info_t s, d;
    mp_get_buffer_raise(src_o, &s, MP_BUFFER_READ);
    mp_get_buffer_raise(dst_o, &d, MP_BUFFER_WRITE);
    return mp_obj_new_int(fl_frame_decode(s.buf, s.len, d.buf, d.len));
}
static MP_DEFINE_CONST_FUN_OBJ_2(frame_decode_into_obj, frame_decode_into);

static mp_obj_t scan_size(mp_obj_t m_o) {
    mp_int_t m = mp_obj_get_int(m_o);
    return mp_obj_new_int(m < 1 ? 0 : (mp_int_t)fl_scan_size((uint32_t)m));
}
static MP_DEFINE_CONST_FUN_OBJ_1(scan_size_obj, scan_size);

static mp_obj_t scan_init(mp_obj_t mem_o, mp_obj_t m_o) {
    mp_buffer_info_t bi;
    mp_get_buffer_raise(mem_o, &bi, MP_BUFFER_RW);
    mp_int_t m = mp_obj_get_int(m_o);
    if (((uintptr_t)bi.buf & 3u) || m < 1 || fl_scan_init(bi.buf, bi.len, (uint32_t)m) != 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("scanner buffer"));
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(scan_init_obj, scan_init);

static fl_scanner *scanner(mp_obj_t mem_o, mp_buffer_info_t *bi) {
    fl_scanner *s = buf_rw(mem_o, sizeof(fl_scanner), bi);
    if (s->cap == 0 || bi->len < fl_scan_size(s->max_frame)) {
        mp_raise_ValueError(MP_ERROR_TEXT("scanner not initialised"));
    }
    return s;
}

/* scan_feed(mem, data, pos) -> position after the next complete frame's 0x00, or -1 when all of
 * data[pos:] is consumed without completing a frame. The payload: scan_get(mem, 9) bytes at offset
 * scan_get(mem, 10) of mem. */
static mp_obj_t scan_feed(mp_obj_t mem_o, mp_obj_t data_o, mp_obj_t pos_o) {
    mp_buffer_info_t bi, d;
    fl_scanner *s = scanner(mem_o, &bi);
    mp_get_buffer_raise(data_o, &d, MP_BUFFER_READ);
    mp_int_t p0 = mp_obj_get_int(pos_o);
    if (p0 < 0 || (size_t)p0 > d.len) {
        mp_raise_ValueError(MP_ERROR_TEXT("pos"));
    }
    size_t pos = (size_t)p0;
    if (fl_scan_feed(s, d.buf, d.len, &pos)) {
        return mp_obj_new_int((mp_int_t)pos);
    }
    return mp_obj_new_int(-1);
}
static MP_DEFINE_CONST_FUN_OBJ_3(scan_feed_obj, scan_feed);

/* nop(a, b) -> None: does nothing; bench/native.py measures the binding's call floor with it */
static mp_obj_t nop(mp_obj_t a, mp_obj_t b) {
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(nop_obj, nop);

/* New bytes objects for the frame paths, made as mp_obj_new_bytes() makes them (header and data allocated
 * separately) but with hash 0: mp_obj_new_bytes() hashes every byte up front (qstr_compute_hash, a serial
 * multiply-xor chain: about 2.5 us per KiB on x64, more than encoding the frame), and a str/bytes object
 * with hash 0 is valid: its hash is computed when first asked for (py/objstr.h GET_STR_HASH,
 * py/runtime.c MP_UNARY_OP_HASH). (Header and data in one block measured 6x slower on the unix port.) */
static mp_obj_str_t *new_bytes_obj(uint8_t *data) {
    mp_obj_str_t *o = m_new_obj(mp_obj_str_t);
    o->base.type = &mp_type_bytes;
    o->hash = 0;
    o->data = data;
    return o;
}

static mp_obj_t new_bytes_copy(const uint8_t *d, size_t n) {
    uint8_t *data = m_new(uint8_t, n + 1);
    fl_copy(data, d, n);
    data[n] = 0;
    mp_obj_str_t *o = new_bytes_obj(data);
    o->len = n;
    return MP_OBJ_FROM_PTR(o);
}

/* frame_encode(payload) -> bytes: the whole frame (with its 0x00) as one new object, encoded straight into
 * its data (room for the largest frame the payload can give, fl_frame_max_encoded(): at most
 * len // 254 + 1 bytes more than used, hidden by len). A str payload is refused as serialframe.encode_frame
 * does (str has the buffer protocol here). */
static mp_obj_t frame_encode(mp_obj_t src_o) {
    mp_buffer_info_t s;
    if (mp_obj_is_str(src_o)) {
        mp_raise_TypeError(MP_ERROR_TEXT("frame payload must be bytes-like, not str"));
    }
    mp_get_buffer_raise(src_o, &s, MP_BUFFER_READ);
    if (s.len > 0x3FFFFFF0u) {
        mp_raise_ValueError(MP_ERROR_TEXT("payload too large"));
    }
    size_t need = fl_frame_max_encoded(s.len);
    uint8_t *data = m_new(uint8_t, need + 1);
    int32_t n = fl_frame_encode(s.buf, s.len, data, need);  /* cannot fail: need is the bound */
    data[n] = 0;
    mp_obj_str_t *o = new_bytes_obj(data);
    o->len = (size_t)n;
    return MP_OBJ_FROM_PTR(o);
}
static MP_DEFINE_CONST_FUN_OBJ_1(frame_encode_obj, frame_encode);

/* scan_feed_list(mem, data) -> a new list of the payloads (bytes) that data completes: all of data through
 * the scanner in one call (the serial read path: FrameDecoder.feed) */
static mp_obj_t scan_feed_list(mp_obj_t mem_o, mp_obj_t data_o) {
    mp_buffer_info_t bi, d;
    fl_scanner *s = scanner(mem_o, &bi);
    mp_get_buffer_raise(data_o, &d, MP_BUFFER_READ);
    mp_obj_t out = mp_obj_new_list(0, NULL);
    size_t pos = 0;
    while (fl_scan_feed(s, d.buf, d.len, &pos)) {
        mp_obj_list_append(out, new_bytes_copy(fl_scan_payload(s), s->plen));
    }
    return out;
}
static MP_DEFINE_CONST_FUN_OBJ_2(scan_feed_list_obj, scan_feed_list);

/* scan_get(mem, field): 0 max_frame 1 cap 2 fill 3 skip 4 frames 5 crc_errors 6 framing_errors
 * 7 oversize 8 bytes_in 9 plen 10 payload offset in mem */
static mp_obj_t scan_get(mp_obj_t mem_o, mp_obj_t f_o) {
    mp_buffer_info_t bi;
    fl_scanner *s = scanner(mem_o, &bi);
    mp_int_t f = mp_obj_get_int(f_o);
    if (f == 10) {
        return mp_obj_new_int((mp_int_t)(fl_scan_payload(s) - (const uint8_t *)s));
    }
    if (f < 0 || f > 9) {
        mp_raise_ValueError(MP_ERROR_TEXT("field"));
    }
    return mp_obj_new_int_from_uint(((uint32_t *)s)[f]);
}
static MP_DEFINE_CONST_FUN_OBJ_2(scan_get_obj, scan_get);

static mp_obj_t scan_reset(mp_obj_t mem_o) {
    mp_buffer_info_t bi;
    fl_scan_reset(scanner(mem_o, &bi));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(scan_reset_obj, scan_reset);

/* ---- rules ---- */

static mp_obj_t prog_size(void) {
    return mp_obj_new_int(sizeof(fl_prog));
}
static MP_DEFINE_CONST_FUN_OBJ_0(prog_size_obj, prog_size);

static mp_obj_t work_size(void) {
    return mp_obj_new_int(WORK_ERR_OFF + sizeof(fl_verr));
}
static MP_DEFINE_CONST_FUN_OBJ_0(work_size_obj, work_size);

/* verify(blob, prog, work) -> 0, or the reason code (verify_message(work) renders it) */
static mp_obj_t verify(mp_obj_t blob_o, mp_obj_t prog_o, mp_obj_t work_o) {
    mp_buffer_info_t b, pb, wb;
    mp_get_buffer_raise(blob_o, &b, MP_BUFFER_READ);
    fl_prog *p = buf_rw(prog_o, sizeof(fl_prog), &pb);
    uint8_t *w = buf_rw(work_o, WORK_ERR_OFF + sizeof(fl_verr), &wb);
    /* a refused program leaves p->size = FL_PROG_REFUSED: the VM calls refuse to run it */
    int code = fl_verify(b.buf, b.len, p, (fl_vwork *)w, (fl_verr *)(w + WORK_ERR_OFF));
    return mp_obj_new_int(code);
}
static MP_DEFINE_CONST_FUN_OBJ_3(verify_obj, verify);

static mp_obj_t verify_message(mp_obj_t work_o) {
    mp_buffer_info_t wb;
    uint8_t *w = buf_rw(work_o, WORK_ERR_OFF + sizeof(fl_verr), &wb);
    char msg[160];
    size_t n = fl_verify_message((fl_verr *)(w + WORK_ERR_OFF), msg, sizeof(msg));
    return mp_obj_new_str(msg, n);
}
static MP_DEFINE_CONST_FUN_OBJ_1(verify_message_obj, verify_message);

/* prog_get(prog, field): 0 size 1 crc 2 n_inputs 3 n_windows 4 n_consts 5 n_rules 6 n_strings
 * 7 n_hyst 8 code_size 9 max_stack 10 state_words 11 n_actions */
static mp_obj_t prog_get(mp_obj_t prog_o, mp_obj_t f_o) {
    mp_buffer_info_t pb;
    fl_prog *p = buf_rw(prog_o, sizeof(fl_prog), &pb);
    switch (mp_obj_get_int(f_o)) {
        case 0: return mp_obj_new_int_from_uint(p->size);
        case 1: return mp_obj_new_int_from_uint(p->crc);
        case 2: return mp_obj_new_int(p->n_inputs);
        case 3: return mp_obj_new_int(p->n_windows);
        case 4: return mp_obj_new_int(p->n_consts);
        case 5: return mp_obj_new_int(p->n_rules);
        case 6: return mp_obj_new_int(p->n_strings);
        case 7: return mp_obj_new_int(p->n_hyst);
        case 8: return mp_obj_new_int(p->code_size);
        case 9: return mp_obj_new_int(p->max_stack);
        case 10: return mp_obj_new_int(p->state_words);
        case 11: return mp_obj_new_int(p->n_actions);
        default: mp_raise_ValueError(MP_ERROR_TEXT("field"));
    }
}
static MP_DEFINE_CONST_FUN_OBJ_2(prog_get_obj, prog_get);

static mp_obj_t vm_init(mp_obj_t prog_o, mp_obj_t st_o) {
    mp_buffer_info_t pb, sb;
    fl_prog *p = buf_rw(prog_o, sizeof(fl_prog), &pb);
    int32_t *st = buf_rw(st_o, 0, &sb);
    if (fl_vm_init(p, st, sb.len / 4) != 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("state too small"));
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(vm_init_obj, vm_init);

/* vm_set_input(prog, st, i, value, now) */
static mp_obj_t vm_set_input(size_t n_args, const mp_obj_t *args) {
    (void)n_args;
    mp_buffer_info_t pb, sb;
    fl_prog *p = buf_rw(args[0], sizeof(fl_prog), &pb);
    int32_t *st = buf_rw(args[1], 0, &sb);
    mp_int_t i = mp_obj_get_int(args[2]);
    mp_int_t v = mp_obj_get_int(args[3]);
    if (sb.len / 4 < p->state_words || i < 0 || fl_vm_set_input(p, st, (uint32_t)i,
            v > 0x7FFFFFFF ? 0x7FFFFFFF : v < -0x7FFFFFFF ? -0x7FFFFFFF : (int32_t)v,
            (int32_t)(mp_obj_get_int(args[4]) & 0x3FFFFFFF)) != 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("input"));
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(vm_set_input_obj, 5, 5, vm_set_input);

/* vm_run(prog, blob, st, stack, out, now, tod, uptime, first) -> number of actions in out */
static mp_obj_t vm_run(size_t n_args, const mp_obj_t *args) {
    (void)n_args;
    mp_buffer_info_t pb, bb, sb, kb, ob;
    fl_prog *p = buf_rw(args[0], sizeof(fl_prog), &pb);
    mp_get_buffer_raise(args[1], &bb, MP_BUFFER_READ);
    int32_t *st = buf_rw(args[2], 0, &sb);
    int32_t *stack = buf_rw(args[3], 0, &kb);
    int32_t *out = buf_rw(args[4], 0, &ob);
    mp_int_t up = mp_obj_get_int(args[7]);
    int n = fl_vm_run(p, bb.buf, bb.len, st, sb.len / 4, stack, kb.len / 4, out, ob.len / 4,
                      (int32_t)(mp_obj_get_int(args[5]) & 0x3FFFFFFF), (int32_t)mp_obj_get_int(args[6]),
                      up > 0x7FFFFFFF ? 0x7FFFFFFF : (int32_t)up, mp_obj_is_true(args[8]));
    if (n < 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("vm buffers"));
    }
    return mp_obj_new_int(n);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(vm_run_obj, 9, 9, vm_run);

#endif
