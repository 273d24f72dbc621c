/* flnative: dynamic native module (.mpy) binding of native/core for MicroPython (py/dynruntime.mk).
 * The functions are in native/binding/flnative_binding.c, shared with the firmware user C module. */
#include "py/dynruntime.h"

/* the core, compiled into this one translation unit */
#include "../core/fl_codec.c"
#include "../core/fl_verify.c"
#include "../core/fl_vm.c"

#include "../binding/flnative_binding.c"

mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY

    /* spelled out: mpy_ld finds qstrs by scanning this file's text (tests check both lists) */
    mp_store_global(MP_QSTR_crc16, MP_OBJ_FROM_PTR(&crc16_obj));
    mp_store_global(MP_QSTR_cobs_encode_into, MP_OBJ_FROM_PTR(&cobs_encode_into_obj));
    mp_store_global(MP_QSTR_cobs_decode_into, MP_OBJ_FROM_PTR(&cobs_decode_into_obj));
    mp_store_global(MP_QSTR_frame_encode_into, MP_OBJ_FROM_PTR(&frame_encode_into_obj));
    mp_store_global(MP_QSTR_frame_decode_into, MP_OBJ_FROM_PTR(&frame_decode_into_obj));
    mp_store_global(MP_QSTR_scan_size, MP_OBJ_FROM_PTR(&scan_size_obj));
    mp_store_global(MP_QSTR_scan_init, MP_OBJ_FROM_PTR(&scan_init_obj));
    mp_store_global(MP_QSTR_scan_feed, MP_OBJ_FROM_PTR(&scan_feed_obj));
    mp_store_global(MP_QSTR_scan_feed_list, MP_OBJ_FROM_PTR(&scan_feed_list_obj));
    mp_store_global(MP_QSTR_frame_encode, MP_OBJ_FROM_PTR(&frame_encode_obj));
    mp_store_global(MP_QSTR_nop, MP_OBJ_FROM_PTR(&nop_obj));
    mp_store_global(MP_QSTR_scan_get, MP_OBJ_FROM_PTR(&scan_get_obj));
    mp_store_global(MP_QSTR_scan_reset, MP_OBJ_FROM_PTR(&scan_reset_obj));
    mp_store_global(MP_QSTR_prog_size, MP_OBJ_FROM_PTR(&prog_size_obj));
    mp_store_global(MP_QSTR_work_size, MP_OBJ_FROM_PTR(&work_size_obj));
    mp_store_global(MP_QSTR_verify, MP_OBJ_FROM_PTR(&verify_obj));
    mp_store_global(MP_QSTR_verify_message, MP_OBJ_FROM_PTR(&verify_message_obj));
    mp_store_global(MP_QSTR_prog_get, MP_OBJ_FROM_PTR(&prog_get_obj));
    mp_store_global(MP_QSTR_vm_init, MP_OBJ_FROM_PTR(&vm_init_obj));
    mp_store_global(MP_QSTR_vm_set_input, MP_OBJ_FROM_PTR(&vm_set_input_obj));
    mp_store_global(MP_QSTR_vm_run, MP_OBJ_FROM_PTR(&vm_run_obj));
    /* binding API version: the device wrapper checks it */
    mp_store_global(MP_QSTR_FORMAT, MP_OBJ_NEW_SMALL_INT(2));

    MP_DYNRUNTIME_INIT_EXIT
}
