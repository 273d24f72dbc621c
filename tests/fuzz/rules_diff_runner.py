# Runs a corpus of rule programs on the reference VM and prints one JSON line per case: the outputs and
# the whole state after every tick. The same file runs under CPython (imported by test_rules_diff.py)
# and under the MicroPython unix port (`micropython rules_diff_runner.py CORPUS`), and the two outputs
# must be identical (docs/rules.md "Numbers"). A case the VM raises on is reported as {"error": type}.
# Another VM with the same interface (VM(prog), set_input, run, out, st, n_in) -- e.g. the native C VM --
# runs the same corpus with `micropython rules_diff_runner.py CORPUS MODULE` (MODULE.VM is used).
import sys

try:
    import ujson as json
except ImportError:
    import json

from fieldlink.rules.verify import VerifyError, verify
from fieldlink.rules.vm import VM


def _unhex(s):
    return bytes(int(s[i:i + 2], 16) for i in range(0, len(s), 2))


def run_case(case, vm_class=VM):
    try:
        prog = verify(_unhex(case["blob"]))
    except VerifyError:
        return {"rejected": True}
    vm = vm_class(prog)
    ticks = []
    try:
        for step in case["steps"]:
            now, tod, up, inputs = step
            for i, v in inputs:
                if i < vm.n_in:
                    vm.set_input(i, v, now)
            n = vm.run(now, tod, up)
            ticks.append([n, [vm.out[j] for j in range(4 * n)], [x for x in vm.st]])
    except Exception as e:  # noqa: BLE001 - a raise is a result to compare, not a crash of the runner
        return {"error": type(e).__name__, "ticks": ticks}
    return {"ticks": ticks}


def main(path, module=None):
    vm_class = __import__(module, None, None, ["VM"]).VM if module else VM
    with open(path) as f:  # one JSON case per line: the unix port's heap holds one at a time
        for line in f:
            if line.strip():
                print(json.dumps(run_case(json.loads(line), vm_class)))


if __name__ == "__main__" or sys.implementation.name == "micropython":
    if len(sys.argv) > 1:
        main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
