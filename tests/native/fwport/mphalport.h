/* fieldlink test port: HAL (output only) */
#include <stddef.h>
static inline void mp_hal_set_interrupt_char(int c) {
    (void)c;
}
/* no pins: keeps py/mphal.h from pulling in extmod/virtpin.h (the source packages have no extmod/) */
#define mp_hal_pin_obj_t int
