/* fieldlink test port: `firmware SCRIPT [DIR...]` runs SCRIPT with DIR... on sys.path, exit 0 or 1
 * (traceback on stderr). See mpconfigport.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "py/builtin.h"
#include "py/compile.h"
#if __has_include("py/cstack.h")
#include "py/cstack.h"  /* MicroPython >= 1.25 */
#define STACK_INIT() mp_cstack_init_with_sp_here(256 * 1024)
#else
#include "py/stackctrl.h"
#define STACK_INIT() (mp_stack_ctrl_init(), mp_stack_set_limit(240 * 1024))
#endif
#include "py/gc.h"
#include "py/lexer.h"
#include "py/mperrno.h"
#include "py/mphal.h"
#include "py/runtime.h"
#include "shared/runtime/gchelper.h"

static char heap[16 * 1024 * 1024];

static void print_stderr(void *env, const char *str, size_t len) {
    (void)env;
    fwrite(str, 1, len, stderr);
}
static const mp_print_t stderr_print = {NULL, print_stderr};

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s SCRIPT [DIR...]\n", argv[0]);
        return 2;
    }
    STACK_INIT();
    gc_init(heap, heap + sizeof(heap));
    mp_init();
    for (int i = 2; i < argc; i++) {
        mp_obj_list_append(mp_sys_path, mp_obj_new_str(argv[i], strlen(argv[i])));
    }
    int rc = 0;
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_lexer_t *lex = mp_lexer_new_from_file(qstr_from_str(argv[1]));
        qstr source_name = lex->source_name;
        mp_parse_tree_t pt = mp_parse(lex, MP_PARSE_FILE_INPUT);
        mp_obj_t f = mp_compile(&pt, source_name, false);
        mp_call_function_0(f);
        nlr_pop();
    } else {
        mp_obj_t exc = MP_OBJ_FROM_PTR(nlr.ret_val);
        if (mp_obj_is_subclass_fast(MP_OBJ_FROM_PTR(mp_obj_get_type(exc)), MP_OBJ_FROM_PTR(&mp_type_SystemExit))) {
            mp_obj_t code = mp_obj_exception_get_value(exc);
            rc = code == mp_const_none ? 0 : (int)mp_obj_get_int(code);
        } else {
            mp_obj_print_exception(&stderr_print, exc);
            rc = 1;
        }
    }
    mp_deinit();
    return rc;
}

mp_uint_t mp_hal_stdout_tx_strn(const char *str, size_t len) {
    fwrite(str, 1, len, stdout);
    return len;
}

void gc_collect(void) {
    gc_collect_start();
    gc_helper_collect_regs_and_stack();
    gc_collect_end();
}

mp_import_stat_t mp_import_stat(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0) {
        return S_ISDIR(st.st_mode) ? MP_IMPORT_STAT_DIR : MP_IMPORT_STAT_FILE;
    }
    return MP_IMPORT_STAT_NO_EXIST;
}

void nlr_jump_fail(void *val) {
    (void)val;
    fprintf(stderr, "fatal: uncaught NLR\n");
    exit(1);
}
