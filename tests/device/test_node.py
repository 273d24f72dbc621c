# Node role in-process: real SensorManager (synthetic driver) and Relays (fake pins), fake link/air,
# settable clock. Runs under CPython and MicroPython.
import json

from devtest import raises, tmpdir

from test_node_support import (GW_CFG, NODE_CFG, Clock, FakeAir, FakeLink, FakeRTC, FakeSerial, FakeWDT,
                               PinBank, asyncio, run)

from fieldlink.runtime import config
from fieldlink.runtime.config import ConfigError
from fieldlink.runtime.state import State
from fieldlink.gateway.role import Gateway, mac_hex
from fieldlink.link.core import T_COMMAND, T_EVENT, T_HEARTBEAT, T_TELEMETRY
from fieldlink.node.role import MAX_PENDING, Node
from fieldlink.relays import Relays
from fieldlink.node.sensors import SensorManager
from fieldlink.runtime.tasks import Supervisor
from fieldlink.gateway.uplink import Uplink

GW = b"\x02\x00\x00\x00\x00\x01"
N1 = b"\x02\x00\x00\x00\x00\x21"


class Led:
    def __init__(self):
        self.values = []

    def value(self, v):
        self.values.append(v)


class Rig:
    def __init__(self, cfg=None, gw_running=True, rules=None, opts=None):
        cfg = json.loads(json.dumps(cfg or NODE_CFG))
        if opts:
            cfg["options"].update(opts)
        self.cfg = cfg
        self.clk = Clock()
        self.air = FakeAir()
        self.gwl = FakeLink(self.air, GW, gateway=True)
        self.gwl.running = gw_running
        self.got = {T_TELEMETRY: [], T_HEARTBEAT: [], T_EVENT: []}
        self.gw_result = None
        for t in self.got:
            self.gwl.on(t, self._rx(t))
        self.link = FakeLink(self.air, N1)
        self.link.running = True
        self.pins = PinBank()
        self.relays = Relays(cfg, clock=self.clk, pin_factory=self.pins)
        self.sensors = SensorManager(cfg, clock=self.clk)
        self.rtc = FakeRTC()
        self.state = State(tmpdir("node") + "/state.json", rtc=self.rtc)
        self.reboots = []
        self.sleeps = []
        self.led = Led()
        self.node = Node(cfg, self.link, sensors=self.sensors, relays=self.relays, state=self.state,
                         clock=self.clk, rules=rules, led=self.led, sleeper=self.sleeps.append,
                         rebooter=lambda: self.reboots.append(1))

    def _rx(self, t):
        def h(mac, mtype, obj, msgid):
            self.got[t].append(obj)
            return self.gw_result
        return h

    async def cmd(self, cmd_op, msgid=1, **a):
        return await self.gwl.send(N1, T_COMMAND, {"op": cmd_op, "a": a}, msgid=msgid)


def test_node_samples_batches_and_sends_telemetry():
    async def main():
        r = Rig()
        readings = await r.node.tick()
        assert sorted(readings) == ["syn", "syn2"]
        assert set(readings["syn"]) == {"temperature", "relative_humidity", "lux"}
        assert not r.node.telemetry_due(r.clk())
        r.clk.advance(1000)
        await r.node.tick()  # syn again -> 3 readings = telemetry_batch
        assert r.node.telemetry_due(r.clk())
        assert await r.node.send_telemetry()
        tel = r.got[T_TELEMETRY]
        assert len(tel) == 1 and tel[0]["q"] == 1 and tel[0]["boot"] == r.state.boot
        assert [x[0] for x in tel[0]["r"]] == ["syn", "syn2", "syn"]
        assert [x[2] for x in tel[0]["r"]] == [1000, 1000, 0]  # ms before sending
        assert r.node.pending == [] and r.node.counters["tel_tx"] == 1 and r.node.counters["samples"] == 3
        # age bound: a single reading is sent once batch_ms has passed
        r.clk.advance(1000)
        await r.node.tick()
        assert not r.node.telemetry_due(r.clk())
        r.clk.advance(10000)
        assert r.node.telemetry_due(r.clk())
    run(main())


def test_node_keeps_readings_while_gateway_unreachable_bounded():
    async def main():
        r = Rig(gw_running=False)
        await r.node.tick()
        assert not await r.node.send_telemetry()
        assert len(r.node.pending) == 2 and r.node.counters["tel_fail"] == 1
        for _ in range(MAX_PENDING):
            r.clk.advance(1000)
            await r.node.tick()
        assert len(r.node.pending) == MAX_PENDING and r.node.counters["tel_dropped"] > 0
        r.gwl.running = True
        assert await r.node.send_telemetry()
        assert len(r.got[T_TELEMETRY][0]["r"]) == MAX_PENDING and r.node.pending == []
    run(main())


def test_node_relay_commands_ack_with_results():
    async def main():
        r = Rig()
        res = await r.cmd("relay", name="fan", op="on")
        assert res == {"ok": True, "name": "fan", "on": True} and r.pins.pins[1].v == 1
        res = await r.cmd("relay", name="pump", op="on")
        assert res["ok"] and r.pins.pins[2].v == 0  # active low
        res = await r.cmd("relay", name="pump", op="off")  # within min_switch_ms (2 s)
        assert res == {"ok": False, "name": "pump", "on": True, "err": "min_switch"}
        r.clk.advance(2500)
        assert (await r.cmd("relay", name="pump", op="toggle"))["on"] is False
        res = await r.cmd("relay", name="fan", op="pulse", ms=500)
        assert res["ok"]  # fan already on; pulse keeps it on until ms
        r.clk.advance(600)
        await r.node.tick()
        assert r.relays.state("fan") is False and r.pins.pins[1].v == 0
        assert (await r.cmd("relay", name="nope", op="on"))["err"] == "unknown_relay"
        assert (await r.cmd("relay", name="fan", op="explode"))["err"] == "bad_op"
        assert (await r.cmd("relay", name="fan", op="pulse", ms=-5))["err"] == "bad_args"
        # relay changes are reported as events
        await r.node.send_events()
        evs = r.got[T_EVENT]
        assert evs and evs[0]["ev"] == "relay" and evs[0]["d"]["relay"] == "fan" and evs[0]["d"]["state"]
        assert [e["d"]["reason"] for e in evs][-1] == "pulse"
    run(main())


def test_node_other_commands_ack_with_results():
    async def main():
        r = Rig()
        assert (await r.cmd("ping", n=7))["pong"] == 7
        res = await r.cmd("config_set", key="heartbeat_s", value=5)
        assert res["ok"] and r.node.opt("heartbeat_s", 0) == 5 and r.state.extra["heartbeat_s"] == 5
        assert (await r.cmd("config_set", key="heartbeat_s", value=0))["err"] == "bad_value"
        assert (await r.cmd("config_set", key="colour", value=1))["err"] == "unknown_key"
        assert (await r.cmd("config_set", key="interval.syn", value=5000))["ok"]
        assert r.sensors.sensors["syn"].interval_ms == 5000
        assert (await r.cmd("config_set", key="interval.nope", value=5000))["err"] == "unknown_sensor"
        # feature toggle: all synthetic sensors off -> nothing sampled
        assert (await r.cmd("feature", name="synthetic", on=False))["ok"]
        r.clk.advance(10000)
        assert await r.node.tick() == {}
        assert (await r.cmd("feature", name="syn2", on=True))["ok"]
        assert list(await r.node.tick()) == ["syn2"]
        assert (await r.cmd("feature", name="warp", on=True))["err"] == "unknown_feature"
        assert (await r.cmd("feature", name="syn", on="yes"))["err"] == "bad_args"
        assert (await r.cmd("time_sync", ts=1700000000000))["ok"]
        r.clk.advance(1500)
        assert r.node.epoch_ms() == 1700000001500
        assert (await r.cmd("identify", s=1))["ok"]
        await r.node.tick()
        r.clk.advance(1100)
        await r.node.tick()
        assert r.led.values and r.led.values[-1] == 0
        st = await r.cmd("self_test")
        assert st["ok"] and st["sensors"] == {"syn2": True} and st["relays"] == 2
        assert (await r.cmd("status"))["st"]["boot"] == r.state.boot
        assert (await r.cmd("status"))["st"]["impl"] == {"frame": "python", "rules": "python"}
        assert (await r.cmd("reboot", ms=100))["in_ms"] == 100
        await r.node.tick()
        assert r.reboots == []
        r.clk.advance(150)
        await r.node.tick()
        assert r.reboots == [1]
        assert (await r.cmd("frobnicate"))["err"] == "unknown_op"
        res = await r.gwl.send(N1, T_COMMAND, [1, 2, 3])
        assert res == {"ok": False, "err": "bad_cmd"}
        assert (await r.cmd("rules_load", prog=b"\x00"))["err"] == "no_rules_engine"
        assert r.node.counters["unknown_cmd"] == 1 and r.node.counters["bad_cmd"] == 1
    run(main())


class FakeRules:
    def __init__(self):
        self.calls = []
        self.loaded = None
        self.fail = False

    def load(self, prog):
        if prog == b"bad":
            raise ValueError("bad magic")
        self.loaded = prog

    def tick(self, now, readings):
        self.calls.append(sorted(readings))
        if self.fail:
            raise RuntimeError("vm fault")
        if "syn" in readings:
            return [{"relay": "fan", "op": "on"}, {"event": "hot", "severity": "warn"},
                    {"interval": 3000, "sensor": "syn2"}, {"set": "mode", "value": 2}]
        return []


def test_node_runs_rules_hook_each_tick_and_applies_actions():
    async def main():
        rules = FakeRules()
        r = Rig(rules=rules)
        await r.node.tick()
        assert rules.calls == [["syn", "syn2"]]
        assert r.relays.state("fan") and r.sensors.sensors["syn2"].interval_ms == 3000
        assert r.state.extra["v_mode"] == 2
        assert [e["ev"] for e in r.node.events] == ["relay", "hot"] and r.node.events[1]["sev"] == "warn"
        await r.node.tick()
        assert rules.calls[-1] == []  # called every tick, even without new readings
        rules.fail = True
        await r.node.tick()
        assert r.node.counters["rules_errors"] == 1
        assert (await r.cmd("rules_load", prog=b"prog"))["ok"] and rules.loaded == b"prog"
        res = await r.cmd("rules_load", prog=b"bad")
        assert res["err"] == "rejected" and "bad magic" in res["msg"]
    run(main())


def test_supervisor_restarts_crashed_task_with_backoff():
    async def main():
        sup = Supervisor(base_ms=10, max_ms=40)
        assert [sup.backoff_ms(n) for n in range(6)] == [0, 10, 20, 40, 40, 40]
        runs = []

        async def flaky():
            runs.append(1)
            if len(runs) < 4:
                raise OSError(5)
        ticks = []

        async def steady():
            for _ in range(20):
                ticks.append(1)
                await asyncio.sleep(0.005)
        sup.spawn("flaky", flaky)
        sup.spawn("steady", steady)
        for _ in range(600):  # poll (up to ~30 s on a loaded machine; ~0.1 s otherwise)
            st = sup.stats()
            if len(runs) >= 4 and st["flaky"]["done"] and len(ticks) >= 20:
                break
            await asyncio.sleep(0.05)
        st = sup.stats()
        assert len(runs) == 4 and st["flaky"]["crashes"] == 3 and st["flaky"]["done"]
        assert "OSError" in st["flaky"]["err"] and sup.crashes == 3
        assert len(ticks) == 20  # other tasks unaffected
    run(main())


class CrashySensors(SensorManager):
    def __init__(self, cfg, clock):
        SensorManager.__init__(self, cfg, clock=clock)
        self.crash = 2

    def due(self, now_ms=None):
        if self.crash:
            self.crash -= 1
            raise RuntimeError("bus wedged")
        return SensorManager.due(self, now_ms)


def test_node_tasks_restart_after_crash_and_feed_watchdog():
    async def main():
        r = Rig(opts={"heartbeat_s": 1, "tick_ms": 20})
        r.node.clock = __import__("fieldlink.runtime.tasks").runtime.tasks.ticks_ms
        r.node.sensors = CrashySensors(r.cfg, r.node.clock)
        r.node.sup.base_ms = 10
        wdt = FakeWDT()
        r.node.wdt = wdt
        r.node.start()
        await asyncio.sleep(0.8)
        r.node.stop()
        await asyncio.sleep(0.02)
        st = r.node.sup.stats()
        assert st["sample"]["crashes"] == 2 and "bus wedged" in st["sample"]["err"]
        assert r.node.counters["samples"] >= 2  # sampling resumed after the restarts
        assert r.got[T_HEARTBEAT] and r.got[T_HEARTBEAT][0]["c"]["crashes"] >= 1
        assert wdt.feeds >= 1
    run(main())


def test_node_deep_sleep_cycle_keeps_state_in_rtc_memory():
    async def main():
        r = Rig(opts={"sleep_ms": 60000, "awake_ms": 300})
        await r.node.run()
        assert r.sleeps == [60000]
        assert len(r.got[T_TELEMETRY]) == 1 and r.got[T_TELEMETRY][0]["sl"] == 60000
        assert r.got[T_HEARTBEAT] == []  # heartbeat only every hb_every_wakes wakes
        boot, seq = r.state.boot, r.state.seq
        woke = State(r.state.path, rtc=r.rtc, deep_wake=True)
        assert woke.woke and woke.boot == boot and woke.seq == seq and woke.counters["tel_tx"] == 1
        cold = State(r.state.path, rtc=r.rtc, deep_wake=False)
        assert not cold.woke and cold.boot == boot + 1 and cold.seq == 0
    run(main())


def test_sleeping_node_gets_queued_command_through_gateway():
    async def main():
        clk = Clock()
        r = Rig(opts={"sleep_ms": 60000, "awake_ms": 500})
        r.clk = clk
        ser = FakeSerial()
        up = Uplink(ser, boot=1, clock=clk)
        gw = Gateway(GW_CFG, r.gwl, up, clock=clk)
        r.node.clock = clk
        ser.host_send({"t": "hello"})
        up.step()
        # the gateway learned earlier that this node sleeps; it is asleep now
        gw._node(N1)["sleep"] = 60000
        gw._node(N1)["last"] = clk()
        clk.advance(5000)
        r.air.asleep.add(N1)
        ser.host_send({"t": "cmd", "id": 9, "op": "relay", "to": mac_hex(N1),
                       "a": {"name": "fan", "op": "on"}})
        up.step()
        await asyncio.sleep(0.01)
        assert [m["state"] for m in ser.take("cmd_state")] == ["queued"]
        r.air.asleep.discard(N1)
        task = asyncio.create_task(r.node.run())  # one wake cycle
        for _ in range(50):
            await asyncio.sleep(0.01)
            up.step()
            if r.sleeps:
                break
        await task
        res = ser.take("res")
        assert res and res[0]["id"] == 9 and res[0]["ok"] and res[0]["r"]["on"]
        assert r.relays.state("fan") and r.sleeps == [60000]
        assert [m["t"] for m in ser.take("tel")] == ["tel"]
    run(main())


def test_config_load_validation_and_last_good_copy():
    d = tmpdir("cfg")
    p = d + "/board.json"
    raises(ConfigError, config.load, p)
    with open(p, "w") as f:
        f.write(json.dumps(NODE_CFG))
    cfg = config.load(p)
    assert cfg["role"] == "node" and config.option(cfg, "heartbeat_s", 1) == 30
    assert config.safe_relay_pins(cfg) == [(1, True), (2, False)]
    for bad, word in (("{not json", "JSON"), ("[1]", "object"), ('{"name": "x", "role": "toaster"}', "role"),
                      ('{"name": "x", "role": "node", "relays": [{"name": "a"}]}', "pin"),
                      ('{"name": "x", "role": "node", "sensors": [{"name": "a", "driver": "s", "interval_ms": 0}]}',
                       "interval_ms")):
        with open(p, "w") as f:
            f.write(bad)
        e = raises(ConfigError, config.load, p)
        assert word in str(e), (bad, str(e))
    last = config.load_last_good(p)
    assert last is not None and last["name"] == "t-node"
    assert config.safe_relay_pins(None) == []


def test_heartbeat_carries_board_and_battery_and_events_carry_boot_and_sequence():
    async def main():
        # no battery option: mains powered, no "bat"; the board is the config's name
        r = Rig()
        assert await r.node.send_heartbeat()
        hb = r.got[T_HEARTBEAT][-1]
        assert hb["bd"] == "t-node" and "bat" not in hb
        # options.battery names a reading (percent): None until it was read, then its last value
        r = Rig(opts={"battery": "syn.relative_humidity"})
        assert await r.node.send_heartbeat()
        assert r.got[T_HEARTBEAT][-1]["bat"] is None
        readings = await r.node.tick()
        assert await r.node.send_heartbeat()
        hb = r.got[T_HEARTBEAT][-1]
        assert hb["bat"] == readings["syn"]["relative_humidity"] and hb["bd"] == "t-node"
        # events: (boot, e) with e unique in the boot, shared with telemetry's q counter
        r.node.emit("door", "warn", {"open": True})
        r.node.emit("door", "info")
        r.clk.advance(1000)
        await r.node.tick()
        assert await r.node.send_telemetry()
        assert await r.node.send_events()
        evs = r.got[T_EVENT]
        qs = [m["q"] for m in r.got[T_TELEMETRY]]
        assert [(e["ev"], e["boot"]) for e in evs] == [("door", r.state.boot), ("door", r.state.boot)]
        # events count on their own (1, 2 in this boot); telemetry's q stays gapless beside them
        assert [e["e"] for e in evs] == [1, 2]
        assert qs == list(range(1, len(qs) + 1)), qs
    run(main())
