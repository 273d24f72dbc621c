# The rules VM of the native C core (flnative, chosen in fieldlink.runtime.native): the Python VM's
# object -- state, stack and output arrays, set_input, get_input -- with run() in C on the same arrays,
# so a program can move between the two VMs without losing state. docs/native.md.
from fieldlink.rules.vm import VM
from fieldlink.runtime import native

_MASK = 0x3FFFFFFF
_MAXV = 0x3FFFFFFF
_NONE = -0x40000000


class NativeVM(VM):
    def __init__(self, prog, module):
        VM.__init__(self, prog)
        self._n = module
        self._prog = bytearray(module.prog_size())
        work = bytearray(module.work_size())
        self._blob = bytes(prog.raw)
        if module.verify(self._blob, self._prog, work):
            raise ValueError("native verifier: " + module.verify_message(work))

    def run(self, now, tod=_NONE, uptime=0):
        now &= _MASK
        self.now = now
        self.tod = tod
        self.uptime = uptime if uptime < _MAXV else _MAXV
        n = self._n.vm_run(self._prog, self._blob, self.st, self.stack, self.out, now, tod, self.uptime,
                           not self.started)
        self.started = True
        self.n_out = n
        return n


def make_vm(prog):
    """A VM for a verified Program: native when available (and its own verifier agrees), else Python."""
    n = native.module()
    if n is not None:
        try:
            return NativeVM(prog, n)
        except ValueError:
            pass  # cannot happen for a program verify.py accepted (tests/native); stay correct anyway
    return VM(prog)
