# The CircuitPython virtual board for device tests (CPython AND the MicroPython unix port):
#
#   with cpyenv.circuitpython():      # device/sim/circuitpython first on sys.path, for this block only
#       import busio, board, espnow   # CircuitPython's modules (fakes), machine/network/esp32 unimportable
#
# The names the fakes define, the MicroPython-only names they hide, and the modules bound to a runtime
# (fieldlink.port.*, Adafruit's drivers) are dropped from sys.modules on entry and restored on exit, so
# the fakes never shadow anything in other tests of the same process.
import sys

NAMES = ("board", "busio", "digitalio", "analogio", "espnow", "espidf", "wifi", "microcontroller", "nvm",
         "alarm", "alarm.time", "alarm.pin", "supervisor", "watchdog", "time", "machine", "network",
         "esp32", "onewire", "aioespnow", "_blocked")


def _here():
    f = __file__
    i = f.rfind("/")
    return f[:i] if i > 0 else "."


def fakes_dir():
    """device/sim/circuitpython, found from this file (tests/device/cpyenv.py)."""
    d = _here()
    if not d.startswith("/"):
        import os
        d = os.getcwd() + ("" if d == "." else "/" + d)
    parts = d.rstrip("/").split("/")
    return "/".join(parts[:-2]) + "/device/sim/circuitpython"


#: modules bound to the runtime they were imported under (the hardware port, Adafruit's drivers)
PREFIXES = ("fieldlink.port", "adafruit_")


def _bound():
    return [n for n in sys.modules if n in NAMES or n.startswith(PREFIXES)]


class circuitpython:
    def __enter__(self):
        import simboard  # noqa: F401 - the sim core is imported before the fakes hide `machine` & co
        self.saved = {}
        for n in _bound():
            self.saved[n] = sys.modules.pop(n)
        self.dir = fakes_dir()
        sys.path.insert(0, self.dir)
        return self

    def __exit__(self, *exc):
        for n in _bound():
            del sys.modules[n]
        while self.dir in sys.path:
            sys.path.remove(self.dir)
        for n, m in self.saved.items():
            sys.modules[n] = m
        return False
