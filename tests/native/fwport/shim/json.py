# The test port has no json module (extmod/ is not in the source package): natmod_checks imports it for
# its command line only; fw_checks.py passes the vectors as a Python module instead.
def load(f):
    raise NotImplementedError("json is not in the fieldlink test port")
