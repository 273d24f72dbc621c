# fieldlink device package: runs on MicroPython >= 1.23 (ESP32-S3/C6) and imports under CPython.
VERSION = "0.1.0"
