# CircuitPython `espidf` (the part the fakes raise): ESP-IDF errors become espidf.IDFError (an OSError),
# ESP_ERR_NO_MEM becomes espidf.MemoryError.


class IDFError(OSError):
    pass


class MemoryError(MemoryError):  # noqa: A001 - the name CircuitPython uses
    pass


def heap_caps_get_total_size():
    return 8 << 20


def heap_caps_get_free_size():
    return 6 << 20


def heap_caps_get_largest_free_block():
    return 4 << 20
