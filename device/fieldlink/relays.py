# Relay outputs: GPIO (active high/low) and 74HC595 shift-register backends, boot safe state, restore
# policy, interlock groups, maximum on-time, minimum switching interval, pulses, events.
# Policies (docs/boards.md "Relays"):
# - Safe state: the constructor drives every output to OFF before doing anything else (GPIO pins are
#   created with their OFF level; the 74HC595 is shifted all-OFF and latched, then OE enabled if wired).
# - restore: "off" stays off, "on" switches on, "last" switches to the state persisted in the store.
# - interlock: switching a relay ON first switches OFF the others of its group (reason "interlock").
# - min_switch_ms: a "command"/"rule" request that would change a relay within min_switch_ms of its
#   previous change is REFUSED (set() returns False, `refused` counts it). Safety-driven OFFs (max_on,
#   interlock, pulse end, all_off) are never refused.
# - max_on_s: tick(now_ms) switches a relay OFF (reason "max_on") once it has been on that long.
# - Every state change calls on_event({"relay", "state", "reason", "t_ms"}).
import json

from fieldlink.runtime.clock import ticks_add as _add, ticks_diff as _diff, ticks_ms as _ms
from fieldlink.runtime.store import read_json, write_json

RESTORE = ("off", "on", "last")  # restore policies (board config "restore"; the host validates with this)
_SAFETY = ("boot", "max_on", "interlock", "pulse", "all_off")


def _machine_pin(num, value):
    """An output created at its OFF level: machine.Pin or a CircuitPython DigitalInOut (fieldlink.port)."""
    from fieldlink.port.active import port
    return port().out_pin(num, value)


class FileStore:
    """Persists {relay: bool} as JSON through the store (temp file + rename: a power cut keeps the old
    or the new states; a broken file restores nothing, every relay stays OFF)."""

    def __init__(self, path="/relays.json"):
        self.path = path

    def load(self):
        d = read_json(self.path, "relay states")
        return d if isinstance(d, dict) else {}

    def save(self, states):
        write_json(self.path, states)


class NvsStore:
    """Persists {relay: bool} as a JSON blob in an esp32.NVS namespace (nvs: injectable for tests)."""

    def __init__(self, namespace="fieldlink", key="relays", nvs=None):
        if nvs is None:
            import esp32
            nvs = esp32.NVS(namespace)
        self.nvs = nvs
        self.key = key

    def load(self):
        buf = bytearray(512)
        try:
            n = self.nvs.get_blob(self.key, buf)
            d = json.loads(bytes(buf[:n]))
            return d if isinstance(d, dict) else {}
        except (OSError, ValueError):
            return {}

    def save(self, states):
        self.nvs.set_blob(self.key, json.dumps(states).encode())
        self.nvs.commit()


class _HC595:
    """74HC595 chain: bits shifted MSB (highest bit) first so that bit i ends up on output Qi of chip
    i // 8; latch (RCLK) rising edge copies the shift register to the outputs."""

    def __init__(self, pins, levels, pin_factory):
        oe = pins.get("hc595_oe")
        self.oe = pin_factory(oe, 1) if oe is not None else None  # outputs disabled while loading
        self.data = pin_factory(pins["hc595_data"], 0)
        self.clk = pin_factory(pins["hc595_clock"], 0)
        self.latch = pin_factory(pins["hc595_latch"], 0)
        self.levels = levels
        self.flush()
        if self.oe is not None:
            self.oe.value(0)

    def flush(self):
        d, c = self.data, self.clk
        lv = self.levels
        for i in range(len(lv) - 1, -1, -1):
            d.value(lv[i])
            c.value(1)
            c.value(0)
        self.latch.value(1)
        self.latch.value(0)


class Relay:
    def __init__(self, cfg):
        self.name = cfg["name"]
        self.active_high = cfg.get("active", "high") != "low"
        self.restore = cfg.get("restore", "off")
        self.group = cfg.get("interlock") or None
        self.max_on_ms = int(cfg.get("max_on_s", 0)) * 1000
        self.min_switch_ms = int(cfg.get("min_switch_ms", 0))
        self.bit = cfg.get("hc595_bit")
        self.pin_num = cfg.get("pin")
        self.pin = None
        self.state = False
        self.changed_ms = None  # time of the last change (None: not switched since boot)
        self.on_since = None
        self.pulse_until = None
        self.refused = 0
        self.switches = 0

    def level(self, on):
        return 1 if on == self.active_high else 0


class Relays:
    def __init__(self, board_cfg, store=None, on_event=None, clock=None, pin_factory=None, restore=True):
        """Drives every relay OFF immediately, emits a "boot" event per relay, then (restore=True)
        applies the restore policies. store: object with load() -> dict and save(dict), or None."""
        pin_factory = pin_factory or _machine_pin
        self.clock = clock or _ms
        self.on_event = on_event
        self.store = store
        self.relays = [Relay(c) for c in board_cfg.get("relays", ())]
        self._by_name = {}
        bits = -1
        for r in self.relays:
            self._by_name[r.name] = r
            if r.bit is not None and r.bit > bits:
                bits = r.bit
        # --- safe state first: nothing else happens before every output is at its OFF level ---
        self._sr = None
        for r in self.relays:
            if r.pin_num is not None:
                r.pin = pin_factory(r.pin_num, r.level(False))
        if bits >= 0:
            levels = [0] * (8 * (bits // 8 + 1))
            for r in self.relays:
                if r.bit is not None:
                    levels[r.bit] = r.level(False)
            self._sr = _HC595(board_cfg.get("pins", {}), levels, pin_factory)
        self.names = [r.name for r in self.relays]
        self.refused = 0
        self.event_errors = 0
        self.store_errors = 0
        self._persist = any(r.restore == "last" for r in self.relays)
        now = self.clock()
        for r in self.relays:
            self._emit(r, "boot", now)
        if restore:
            self.restore(now)

    def _get(self, name):
        return self._by_name[name]  # KeyError for an unknown relay

    def _write(self, r, on):
        lv = r.level(on)
        if r.pin is not None:
            r.pin.value(lv)
        else:
            self._sr.levels[r.bit] = lv
            self._sr.flush()

    def _emit(self, r, reason, now):
        if self.on_event is None:
            return
        try:
            self.on_event({"relay": r.name, "state": r.state, "reason": reason, "t_ms": now})
        except Exception:  # noqa: BLE001 - a faulty listener must not break switching
            self.event_errors += 1

    def _apply(self, r, on, reason, now):
        self._write(r, on)
        r.state = on
        r.changed_ms = now
        r.switches += 1
        r.on_since = now if on else None
        r.pulse_until = None
        self._emit(r, reason, now)
        if self._persist and self.store is not None:
            try:
                self.store.save(self.states())
            except Exception:  # noqa: BLE001 - flash full / NVS error: keep switching
                self.store_errors += 1

    def restore(self, now_ms=None):
        """Apply each relay's restore policy (reason "restore"). An interlock group gets at most one
        relay on: the first in config order wins, the others stay off."""
        now = self.clock() if now_ms is None else now_ms
        saved = {}
        if self.store is not None and self._persist:
            try:
                saved = self.store.load() or {}
            except Exception:  # noqa: BLE001
                self.store_errors += 1
        for r in self.relays:
            want = r.restore == "on" or (r.restore == "last" and bool(saved.get(r.name, False)))
            if not want or r.state:
                continue
            if r.group and any(o.state and o.group == r.group for o in self.relays):
                continue
            self._apply(r, True, "restore", now)

    def set(self, name, on, reason="command", now_ms=None):
        """Switch a relay. Returns True if it is now in the requested state, False if refused by the
        minimum switching interval."""
        r = self._get(name)
        on = bool(on)
        now = self.clock() if now_ms is None else now_ms
        if r.state == on:
            if not on:
                r.pulse_until = None
            return True
        if (reason not in _SAFETY and r.changed_ms is not None
                and _diff(now, r.changed_ms) < r.min_switch_ms):
            r.refused += 1
            self.refused += 1
            return False
        if on and r.group:
            for o in self.relays:
                if o is not r and o.state and o.group == r.group:
                    self._apply(o, False, "interlock", now)
        self._apply(r, on, reason, now)
        return True

    def on(self, name, reason="command", now_ms=None):
        return self.set(name, True, reason, now_ms)

    def off(self, name, reason="command", now_ms=None):
        return self.set(name, False, reason, now_ms)

    def toggle(self, name, reason="command", now_ms=None):
        return self.set(name, not self._get(name).state, reason, now_ms)

    def pulse(self, name, ms, reason="command", now_ms=None):
        """Switch on now and off after ms (by tick(), reason "pulse"). False if refused."""
        now = self.clock() if now_ms is None else now_ms
        if not self.set(name, True, reason, now):
            return False
        self._get(name).pulse_until = _add(now, int(ms))
        return True

    def all_off(self, reason="all_off", now_ms=None):
        now = self.clock() if now_ms is None else now_ms
        for r in self.relays:
            if r.state:
                self._apply(r, False, reason, now)

    def tick(self, now_ms=None):
        """Ends pulses and enforces max_on; returns the number of relays switched off."""
        now = self.clock() if now_ms is None else now_ms
        n = 0
        for r in self.relays:
            if not r.state:
                continue
            if r.pulse_until is not None and _diff(now, r.pulse_until) >= 0:
                self._apply(r, False, "pulse", now)
                n += 1
            elif r.max_on_ms and _diff(now, r.on_since) >= r.max_on_ms:
                self._apply(r, False, "max_on", now)
                n += 1
        return n

    def state(self, name):
        return self._get(name).state

    def states(self):
        return {r.name: r.state for r in self.relays}

    def relay(self, name):
        return self._get(name)
