# Relays (GPIO backend): boot safe state, restore policies across a "reboot", interlock, minimum
# switching interval, max on-time, pulses, events, stores. Time comes from an injected clock.
from devtest import raises, tmpdir

from fieldlink.relays import FileStore, NvsStore, Relays


class Pin:
    def __init__(self, num, value, log):
        self.num = num
        self.levels = [value]  # level history, first = level given at construction
        log.append(("new", num, value))
        self.log = log

    def value(self, v=None):
        if v is None:
            return self.levels[-1]
        self.levels.append(v)
        self.log.append(("set", self.num, v))


class Board:
    def __init__(self):
        self.pins = {}
        self.log = []

    def factory(self, num, value):
        p = self.pins[num] = Pin(num, value, self.log)
        return p

    def level(self, num):
        return self.pins[num].levels[-1]


class Clock:
    def __init__(self, t=1000):
        self.t = t

    def __call__(self):
        return self.t


class MemStore:
    def __init__(self):
        self.data = {}
        self.saves = 0

    def load(self):
        return dict(self.data)

    def save(self, states):
        self.saves += 1
        self.data = dict(states)


def cfg(*relays):
    return {"pins": {}, "relays": list(relays)}


def make(config, store=None, restore=True, t=1000):
    b = Board()
    ev = []
    clk = Clock(t)
    r = Relays(config, store=store, on_event=ev.append, clock=clk, pin_factory=b.factory, restore=restore)
    return r, b, ev, clk


FAN = {"name": "fan", "pin": 1, "active": "high", "restore": "off"}
PUMP = {"name": "pump", "pin": 2, "active": "low", "restore": "off"}


def test_boot_drives_outputs_off_at_construction():
    r, b, ev, _ = make(cfg(FAN, PUMP))
    # active-low pump: OFF is a high level, given when the pin is created (no glitch), never changed
    assert b.log == [("new", 1, 0), ("new", 2, 1)]
    assert b.pins[2].levels == [1]
    assert ev == [{"relay": "fan", "state": False, "reason": "boot", "t_ms": 1000},
                  {"relay": "pump", "state": False, "reason": "boot", "t_ms": 1000}]
    assert r.states() == {"fan": False, "pump": False}


def test_levels_follow_active_polarity():
    r, b, ev, _ = make(cfg(FAN, PUMP))
    assert r.on("fan") and r.on("pump")
    assert b.level(1) == 1 and b.level(2) == 0
    assert r.off("pump", now_ms=5000)
    assert b.level(2) == 1
    assert ev[-1] == {"relay": "pump", "state": False, "reason": "command", "t_ms": 5000}
    assert raises(KeyError, r.on, "heater")


def test_min_switch_interval_refuses_requests_inside_it():
    r, b, ev, clk = make(cfg(dict(FAN, min_switch_ms=2000)))
    assert r.on("fan")  # first switch after boot is allowed
    clk.t = 2999
    assert r.off("fan") is False  # 1999 ms after the change: refused, state unchanged
    assert r.state("fan") and b.level(1) == 1
    assert r.refused == 1 and r.relay("fan").refused == 1
    assert r.on("fan")  # already on: nothing to refuse
    clk.t = 3000
    assert r.off("fan", reason="rule")
    assert ev[-1]["reason"] == "rule" and ev[-1]["state"] is False
    clk.t = 3500
    assert r.toggle("fan") is False
    assert len([e for e in ev if e["reason"] != "boot"]) == 2


def test_interlock_switches_the_other_off_first():
    a = {"name": "vent_open", "pin": 5, "interlock": "vent", "min_switch_ms": 1000}
    c = {"name": "vent_close", "pin": 6, "interlock": "vent", "min_switch_ms": 1000}
    r, b, ev, clk = make(cfg(a, c, FAN))
    r.on("vent_open")
    r.on("fan")
    clk.t = 1500
    del ev[:]
    del b.log[:]
    assert r.on("vent_close")
    # the other relay of the group goes off BEFORE this one goes on; fan (no group) is untouched
    assert b.log == [("set", 5, 0), ("set", 6, 1)]
    assert [(e["relay"], e["state"], e["reason"]) for e in ev] == [
        ("vent_open", False, "interlock"), ("vent_close", True, "command")]
    assert r.state("fan")
    # vent_open changed at 1500 (interlock off): a request at 1600 is refused and changes nothing,
    # not even the other relay of the group
    clk.t = 1600
    assert r.on("vent_open") is False
    assert r.state("vent_close") and not r.state("vent_open")
    clk.t = 2500
    assert r.on("vent_open")
    assert not r.state("vent_close") and r.state("vent_open")


def test_interlock_request_refused_by_its_own_interval_leaves_group_alone():
    a = {"name": "a", "pin": 5, "interlock": "g", "min_switch_ms": 1000}
    c = {"name": "c", "pin": 6, "interlock": "g", "min_switch_ms": 1000}
    r, b, ev, clk = make(cfg(a, c))
    r.on("c")
    clk.t = 1200
    r.off("c", reason="max_on")  # safety reasons are never refused
    r.on("a")
    clk.t = 1300
    assert r.on("c") is False  # c changed at 1200: refused
    assert r.state("a") and not r.state("c")


def test_max_on_time_auto_off_by_tick():
    r, b, ev, clk = make(cfg(dict(FAN, max_on_s=60)))
    r.on("fan", now_ms=10000)
    assert r.tick(69999) == 0 and r.state("fan")
    assert r.tick(70000) == 1
    assert not r.state("fan") and b.level(1) == 0
    assert ev[-1] == {"relay": "fan", "state": False, "reason": "max_on", "t_ms": 70000}
    assert r.tick(200000) == 0


def test_pulse_ends_on_tick_even_inside_min_switch():
    r, b, ev, clk = make(cfg(dict(FAN, min_switch_ms=5000)))
    assert r.pulse("fan", 300, now_ms=2000)
    assert r.state("fan")
    assert r.tick(2299) == 0
    assert r.tick(2300) == 1
    assert not r.state("fan")
    assert [(e["state"], e["reason"]) for e in ev[1:]] == [(True, "command"), (False, "pulse")]
    assert r.pulse("fan", 300, now_ms=3000) is False  # min_switch_ms after the pulse end: refused


def test_all_off_and_event_listener_errors():
    def boom(e):
        raise RuntimeError("listener failed")

    b = Board()
    r = Relays(cfg(FAN, PUMP), on_event=boom, clock=Clock(), pin_factory=b.factory)
    assert r.event_errors == 2  # the two boot events
    r.on("fan")
    r.on("pump")
    r.all_off()
    assert r.states() == {"fan": False, "pump": False}
    assert b.level(1) == 0 and b.level(2) == 1


def reboot(config, store, t=1000):
    return make(config, store=store, t=t)


def test_restore_policies_after_reboot():
    config = cfg({"name": "off", "pin": 1, "restore": "off"}, {"name": "on", "pin": 2, "restore": "on"},
                 {"name": "last_on", "pin": 3, "restore": "last"},
                 {"name": "last_off", "pin": 4, "restore": "last", "active": "low"})
    store = MemStore()
    r, b, ev, clk = make(config, store=store)
    assert r.states() == {"off": False, "on": True, "last_on": False, "last_off": False}
    r.on("off")
    r.on("last_on")
    r.on("last_off")
    clk.t = 9000
    r.off("last_off")
    assert store.data["last_on"] is True and store.data["last_off"] is False
    # "reboot": new instance, same store
    r2, b2, ev2, _ = reboot(config, store)
    assert r2.states() == {"off": False, "on": True, "last_on": True, "last_off": False}
    # everything was driven OFF first, then restored (pin 3 created at 0, then set to 1)
    assert b2.log[:4] == [("new", 1, 0), ("new", 2, 0), ("new", 3, 0), ("new", 4, 1)]
    assert b2.pins[3].levels == [0, 1] and b2.pins[4].levels == [1]
    assert [(e["relay"], e["reason"]) for e in ev2 if e["reason"] != "boot"] == [
        ("on", "restore"), ("last_on", "restore")]


def test_restore_false_defers_and_respects_interlock():
    config = cfg({"name": "a", "pin": 1, "restore": "on", "interlock": "g"},
                 {"name": "b", "pin": 2, "restore": "on", "interlock": "g"})
    r, b, ev, _ = make(config, restore=False)
    assert r.states() == {"a": False, "b": False}
    r.restore()
    assert r.states() == {"a": True, "b": False}  # only the first of the group


def test_file_store_survives_reboot_and_bad_file():
    d = tmpdir("relays")
    config = cfg({"name": "heater", "pin": 7, "restore": "last"})
    r, _, _, _ = make(config, store=FileStore(d + "/relays.json"))
    r.on("heater")
    r2, b2, _, _ = make(config, store=FileStore(d + "/relays.json"))
    assert r2.state("heater") and b2.level(7) == 1
    r2.off("heater")
    r3, _, _, _ = make(config, store=FileStore(d + "/relays.json"))
    assert not r3.state("heater")
    with open(d + "/relays.json", "w") as f:
        f.write("{not json")
    r4, _, _, _ = make(config, store=FileStore(d + "/relays.json"))
    assert not r4.state("heater")


def test_store_failure_is_counted_not_raised():
    class Broken:
        def load(self):
            raise OSError(5)

        def save(self, s):
            raise OSError(28)

    r, b, _, _ = make(cfg({"name": "x", "pin": 1, "restore": "last"}), store=Broken())
    assert r.store_errors == 1
    assert r.on("x") and b.level(1) == 1
    assert r.store_errors == 2


def test_no_writes_without_a_last_policy():
    store = MemStore()
    r, _, _, _ = make(cfg(FAN), store=store)
    r.on("fan")
    assert store.saves == 0


def test_nvs_store_round_trip():
    class FakeNVS:
        def __init__(self):
            self.blobs = {}
            self.commits = 0

        def set_blob(self, key, value):
            self.blobs[key] = bytes(value)

        def get_blob(self, key, buf):
            if key not in self.blobs:
                raise OSError(-4354)  # ESP_ERR_NVS_NOT_FOUND
            v = self.blobs[key]
            buf[:len(v)] = v
            return len(v)

        def commit(self):
            self.commits += 1

    nvs = FakeNVS()
    config = cfg({"name": "valve", "pin": 3, "restore": "last"})
    r, _, _, _ = make(config, store=NvsStore(nvs=nvs))
    assert not r.state("valve")
    r.on("valve")
    assert nvs.commits == 1
    r2, _, _, _ = make(config, store=NvsStore(nvs=nvs))
    assert r2.state("valve")
