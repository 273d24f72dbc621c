# fieldlink's native core as a user C module for CMake-based MicroPython ports (esp32 with ESP-IDF):
#   idf.py -D MICROPY_BOARD=ESP32_GENERIC_C6 -D USER_C_MODULES=/path/to/fieldlink/native/usermod/micropython.cmake build
# or make -C ports/esp32 BOARD=... USER_C_MODULES=/path/to/fieldlink/native/usermod/micropython.cmake
# See docs/native.md.
add_library(usermod_flnative INTERFACE)

target_sources(usermod_flnative INTERFACE
    ${CMAKE_CURRENT_LIST_DIR}/flnative_mod.c
    ${CMAKE_CURRENT_LIST_DIR}/../core/fl_codec.c
    ${CMAKE_CURRENT_LIST_DIR}/../core/fl_verify.c
    ${CMAKE_CURRENT_LIST_DIR}/../core/fl_vm.c
)

target_include_directories(usermod_flnative INTERFACE
    ${CMAKE_CURRENT_LIST_DIR}/../core
    ${CMAKE_CURRENT_LIST_DIR}/../binding
)

target_link_libraries(usermod INTERFACE usermod_flnative)
