# fieldlink virtual board. The modules in this directory are named after MicroPython's ESP32 modules
# (machine, esp32, espnow, aioespnow, network, ...) and are put first on MICROPYPATH / sys.path so that
# unmodified device code runs against them. Never deployed to hardware.
