# The hardware port for the runtime this runs on: port() returns fieldlink.port.mpy (MicroPython:
# machine, network, espnow, esp32) or fieldlink.port.cpy (CircuitPython: board, busio, digitalio,
# analogio, espnow, wifi, microcontroller, alarm), which have the same functions (docs/circuitpython.md
# "Port layer"). Chosen once, by what can be imported: CircuitPython has no `machine`, MicroPython no
# `busio`. The module is imported by a computed name, so the build's import graph does not pull both
# into a bundle: `fieldlink build` adds the board runtime's port itself.
_impl = [None]


def port():
    p = _impl[0]
    if p is None:
        name = "mpy"
        try:
            import machine  # noqa: F401
        except ImportError:
            try:
                import busio  # noqa: F401
                name = "cpy"
            except ImportError:  # CPython without a virtual board: MicroPython's, built lazily
                pass
        p = _impl[0] = __import__("fieldlink.port." + name, None, None, ("NAME",))
    return p
