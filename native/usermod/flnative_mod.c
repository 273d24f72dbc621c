/* flnative as a user C module frozen into a firmware (USER_C_MODULES, see docs/native.md): the same
 * functions and API as the dynamic native module (native/natmod). */
#include "py/runtime.h"
#include "py/obj.h"
#include "py/objstr.h"

#include "fl_core.h"
#include "flnative_binding.c"  /* included, not compiled on its own */

static const mp_rom_map_elem_t flnative_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_flnative) },
    { MP_ROM_QSTR(MP_QSTR_FORMAT), MP_ROM_INT(2) },
    { MP_ROM_QSTR(MP_QSTR_crc16), MP_ROM_PTR(&crc16_obj) },
    { MP_ROM_QSTR(MP_QSTR_cobs_encode_into), MP_ROM_PTR(&cobs_encode_into_obj) },
    { MP_ROM_QSTR(MP_QSTR_cobs_decode_into), MP_ROM_PTR(&cobs_decode_into_obj) },
    { MP_ROM_QSTR(MP_QSTR_frame_encode_into), MP_ROM_PTR(&frame_encode_into_obj) },
    { MP_ROM_QSTR(MP_QSTR_frame_decode_into), MP_ROM_PTR(&frame_decode_into_obj) },
    { MP_ROM_QSTR(MP_QSTR_scan_size), MP_ROM_PTR(&scan_size_obj) },
    { MP_ROM_QSTR(MP_QSTR_scan_init), MP_ROM_PTR(&scan_init_obj) },
    { MP_ROM_QSTR(MP_QSTR_scan_feed), MP_ROM_PTR(&scan_feed_obj) },
    { MP_ROM_QSTR(MP_QSTR_scan_feed_list), MP_ROM_PTR(&scan_feed_list_obj) },
    { MP_ROM_QSTR(MP_QSTR_frame_encode), MP_ROM_PTR(&frame_encode_obj) },
    { MP_ROM_QSTR(MP_QSTR_nop), MP_ROM_PTR(&nop_obj) },
    { MP_ROM_QSTR(MP_QSTR_scan_get), MP_ROM_PTR(&scan_get_obj) },
    { MP_ROM_QSTR(MP_QSTR_scan_reset), MP_ROM_PTR(&scan_reset_obj) },
    { MP_ROM_QSTR(MP_QSTR_prog_size), MP_ROM_PTR(&prog_size_obj) },
    { MP_ROM_QSTR(MP_QSTR_work_size), MP_ROM_PTR(&work_size_obj) },
    { MP_ROM_QSTR(MP_QSTR_verify), MP_ROM_PTR(&verify_obj) },
    { MP_ROM_QSTR(MP_QSTR_verify_message), MP_ROM_PTR(&verify_message_obj) },
    { MP_ROM_QSTR(MP_QSTR_prog_get), MP_ROM_PTR(&prog_get_obj) },
    { MP_ROM_QSTR(MP_QSTR_vm_init), MP_ROM_PTR(&vm_init_obj) },
    { MP_ROM_QSTR(MP_QSTR_vm_set_input), MP_ROM_PTR(&vm_set_input_obj) },
    { MP_ROM_QSTR(MP_QSTR_vm_run), MP_ROM_PTR(&vm_run_obj) },
};
static MP_DEFINE_CONST_DICT(flnative_globals, flnative_globals_table);

const mp_obj_module_t flnative_user_cmodule = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&flnative_globals,
};

MP_REGISTER_MODULE(MP_QSTR_flnative, flnative_user_cmodule);
