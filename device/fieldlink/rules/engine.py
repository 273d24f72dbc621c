# RuleEngine: the node's handle on the rules. Verifies and hot-swaps programs (at a tick boundary),
# persists the accepted program so it survives a reboot, feeds readings into the VM and turns the VM's
# output buffer into the small action dicts fieldlink.node.role applies:
#   {"relay": name, "op": "on"|"off"|"pulse", "ms": ms, "rule": rule}
#   {"event": name, "severity": "info"|"warning"|"alert"|"critical", "rule": rule}
#   {"interval": ms, "rule": rule}        {"sleep_ms": ms, "rule": rule}
# A rejected program raises VerifyError (reason in the message, also in last_error); the running
# program stays. See docs/rules.md "Node integration".
import os

from fieldlink.rules import opcodes as O
from fieldlink.rules.verify import VerifyError, verify
from fieldlink.rules.native_vm import make_vm

DEFAULT_PATH = "/rules.bin"
_OPS = ("", "on", "off")


def _number(x):
    """A finite int or float (bool counts as 0/1). x - x is 0 only for finite numbers."""
    t = type(x)
    if t is int or t is bool:
        return True
    return t is float and x - x == 0.0


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class RuleEngine:
    def __init__(self, path=DEFAULT_PATH, restore=True):
        """path: where the accepted program is persisted (None: do not persist)."""
        self.path = path
        self.prog = None
        self.vm = None
        self.pending = None
        self.last_error = None
        self.swaps = 0
        self.bad_readings = 0  # readings refused by set_input (NaN, infinite, not a number)
        self.uptime = 0
        self.tod_source = None  # optional callable() -> ms since local midnight, or None
        self._last_now = None
        self._slots = {}
        self._sensors = {}
        if restore and path and _exists(path):
            try:
                with open(path, "rb") as f:
                    blob = f.read()
                self._install(verify(blob))
            except (OSError, VerifyError) as e:
                self.last_error = "persisted program rejected: %s" % e

    # ---------------------------------------------------------------- loading
    def load(self, blob, persist=True):
        """Verify a program and stage it; it replaces the running one at the start of the next tick.
        Raises VerifyError(reason) and keeps the running program if the new one is rejected."""
        try:
            prog = verify(blob)
        except VerifyError as e:
            self.last_error = str(e)
            raise
        if persist and self.path:
            tmp = self.path + ".new"
            with open(tmp, "wb") as f:
                f.write(prog.raw)
            os.rename(tmp, self.path)
        self.pending = prog
        self.last_error = None
        return prog

    def unload(self):
        """Stop running rules and forget the persisted program."""
        self.pending = None
        self.prog = None
        self.vm = None
        self._slots = {}
        self._sensors = {}
        if self.path and _exists(self.path):
            os.remove(self.path)

    def _install(self, prog):
        vm = make_vm(prog)  # the native C VM when present (same state layout and results)
        slots = {}
        sensors = {}
        for i in range(len(prog.input_names)):
            name = prog.input_names[i]
            slots[name] = i
            if prog.input_kind[i] == O.IN_SENSOR:
                dot = name.find(".")
                lst = sensors.get(name[:dot])
                if lst is None:
                    lst = sensors[name[:dot]] = []
                lst.append((name[dot + 1:], i))
        self.prog = prog
        self.vm = vm
        self._slots = slots
        self._sensors = sensors
        self.swaps += 1

    # ---------------------------------------------------------------- inputs
    def slot(self, name):
        """Input slot of "sensor.quantity" / "remote.x" / "flag.x" / "relay.x" / "var.x", or -1."""
        return self._slots.get(name, -1)

    def set_input(self, name_or_slot, value, now_ms):
        """Feed one value (float, int or bool) taken at now_ms. Unknown names are ignored (False)."""
        if self.pending is not None:
            self._swap()
        vm = self.vm
        if vm is None or value is None:
            return False
        i = name_or_slot if isinstance(name_or_slot, int) else self._slots.get(name_or_slot, -1)
        if i < 0 or i >= vm.n_in:
            return False
        k = vm.kinds[i]
        if k == O.IN_RELAY or k == O.IN_FLAG:
            v = 1 if value else 0
        elif not _number(value):
            # NaN, an infinity, a string...: refuse this reading (counted), the rules run on the others
            self.bad_readings += 1
            return False
        else:
            v = O.to_fixed(value)
        vm.set_input(i, v, now_ms)
        return True

    def get(self, name):
        """Current value of an input as a float (None if unknown or never set)."""
        i = self._slots.get(name, -1)
        if self.vm is None or i < 0:
            return None
        v = self.vm.get_input(i)
        if v == O.NONE:
            return None
        k = self.vm.kinds[i]
        return v if k == O.IN_RELAY or k == O.IN_FLAG else v / O.SCALE

    def _feed(self, readings, now):
        if not isinstance(readings, dict):
            self.bad_readings += 1
            return
        for key in readings:
            val = readings[key]
            if isinstance(val, dict):
                lst = self._sensors.get(key)
                if lst is None or val.get("valid") is False:
                    continue
                for q, i in lst:
                    v = val.get(q)
                    if v is not None:
                        self.set_input(i, v, now)
            elif isinstance(key, (str, int)) and not isinstance(key, bool):
                self.set_input(key, val, now)
            else:
                self.bad_readings += 1

    # ---------------------------------------------------------------- ticking
    def _swap(self):
        prog = self.pending
        self.pending = None
        self._install(prog)

    def tick(self, now_ms, readings=None, tod_ms=None):
        """One rules tick. readings: {"sensor.quantity": value} and/or the node's
        {sensor: {"quantity": value, "valid": bool, ...}}. Returns a list of action dicts."""
        if self.pending is not None:
            self._swap()
        last = self._last_now
        self._last_now = now_ms
        if last is not None:
            d = O.ticks_diff(now_ms & O.TICKS_MASK, last & O.TICKS_MASK)
            if d > 0:
                self.uptime = O.saturate(self.uptime + d)
        vm = self.vm
        if vm is None:
            return []
        if readings:
            self._feed(readings, now_ms)
        if tod_ms is None and self.tod_source is not None:
            tod_ms = self.tod_source()
        if tod_ms is not None and type(tod_ms) is not int:
            tod_ms = int(tod_ms) if _number(tod_ms) else None
        n = vm.run(now_ms, O.NONE if tod_ms is None else tod_ms % O.DAY_MS, self.uptime)
        return self.actions(n)

    def actions(self, n):
        """The first n entries of the VM's output buffer as action dicts."""
        out = self.vm.out
        p = self.prog
        res = []
        for j in range(n):
            kind, a, arg, r = out[4 * j], out[4 * j + 1], out[4 * j + 2], out[4 * j + 3]
            rule = p.rule_names[r]
            if kind == O.ACT_RELAY:
                res.append({"relay": p.input_names[a][6:], "op": "on" if arg else "off", "rule": rule})
            elif kind == O.ACT_PULSE:
                res.append({"relay": p.input_names[a][6:], "op": "pulse", "ms": arg, "rule": rule})
            elif kind == O.ACT_EVENT:
                res.append({"event": p.strings[a], "severity": O.SEVERITIES[arg], "rule": rule})
            elif kind == O.ACT_INTERVAL:
                res.append({"interval": arg, "rule": rule})
            else:
                res.append({"sleep_ms": arg, "rule": rule})
        return res

    def info(self):
        p = self.prog
        d = {"loaded": p is not None, "swaps": self.swaps, "pending": self.pending is not None,
             "error": self.last_error, "bad_readings": self.bad_readings}
        if p is not None:
            d["rules"] = len(p.rule_names)
            d["size"] = len(p.raw)
            d["crc"] = p.crc
            d["state_words"] = p.state_words
        return d
