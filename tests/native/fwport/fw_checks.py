# Runs inside the test port firmware (flnative frozen in as a user C module, tests/native/
# test_usermod_firmware.py): the natmod's differential checks (tests/native/mpy/natmod_checks.py) on the
# frozen module, vectors from the fl_vectors module the test writes. Prints one "OK <check>" per check.
# ruff: noqa: UP031
import sys

import flnative
import natmod_checks as C
from fl_vectors import V

print("micropython %d.%d.%d flnative FORMAT %d" % (sys.implementation.version[:3] + (flnative.FORMAT,)))
for name in ("codecs", "scanner", "rules", "heap"):
    C.CHECKS[name](V)
    print("OK", name)
