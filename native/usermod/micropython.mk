# fieldlink's native core as a user C module for make-based MicroPython ports (unix, ...):
#   make -C ports/unix USER_C_MODULES=/path/to/fieldlink/native
# (MicroPython picks up every <dir>/micropython.mk under USER_C_MODULES). See docs/native.md.
FLNATIVE_DIR := $(USERMOD_DIR)

SRC_USERMOD_C += $(FLNATIVE_DIR)/flnative_mod.c
SRC_USERMOD_LIB_C += $(FLNATIVE_DIR)/../core/fl_codec.c
SRC_USERMOD_LIB_C += $(FLNATIVE_DIR)/../core/fl_verify.c
SRC_USERMOD_LIB_C += $(FLNATIVE_DIR)/../core/fl_vm.c

CFLAGS_USERMOD += -I$(FLNATIVE_DIR)/../core -I$(FLNATIVE_DIR)/../binding
