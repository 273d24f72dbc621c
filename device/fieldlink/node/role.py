# Node role: asyncio tasks under a supervisor (fieldlink.runtime.tasks.Supervisor):
#   link      the link layer's receive/timer loop (fieldlink.link.node_link.NodeLink.run)
#   join      pairs with / finds the gateway again (join, rescan) with backoff
#   sample    samples sensors when due (SensorManager), runs the rules hook, ticks the relays
#   telemetry sends batches of readings (size or age bound) with an ACK; a batch that went on the air
#             unacknowledged keeps its identity (same q and body, resent frame for frame: exactly once)
#   heartbeat periodic status (uptime, boot, firmware, counters, relay states)
#   wdt       feeds machine.WDT while the loop is alive
# Commands arrive through the link (T_COMMAND) and are answered in the ACK (fieldlink.node.commands).
# Battery nodes with options.sleep_ms > 0 run one cycle per wake instead (run_sleep_cycle): sample,
# send, pick up queued commands, save state to RTC memory, deep sleep.
#
# Seams for other modules: self.sensors (SensorManager), self.relays (Relays), self.rules (None or an
# object with tick(now_ms, readings) -> [actions] and load(program_bytes)).
import asyncio

from fieldlink import VERSION
from fieldlink.node import commands
from fieldlink.link.core import T_COMMAND, T_TIME_SYNC, LinkError
from fieldlink.node.report import MAX_PENDING, Reporter, with_sleep  # noqa: F401  (MAX_PENDING re-exported)
from fieldlink.runtime import native
from fieldlink.runtime.clock import asleep_ms, ticks_add, ticks_diff, ticks_ms
from fieldlink.runtime.role import RoleBase
from fieldlink.runtime.tasks import Log, exc_text


COUNTERS = ("samples", "invalid", "tel_tx", "tel_fail", "tel_dropped", "hb_tx", "hb_fail", "evt_tx",
            "evt_fail", "cmds", "unknown_cmd", "bad_cmd", "cmd_errors", "rules_errors", "actions",
            "joins", "join_fail", "time_rx")


class Node(RoleBase):
    def __init__(self, cfg, link, sensors=None, relays=None, state=None, clock=ticks_ms, log=None,
                 wdt=None, rules=None, led=None, sleeper=None, rebooter=None):
        self.cfg = cfg
        self.opts = dict(cfg.get("options") or {})
        RoleBase.__init__(self, link, clock, log or Log("node"), wdt)
        self.sensors = sensors
        self.relays = relays
        self.rules = rules
        self.led = led
        self.sleeper = sleeper  # callable(ms): deep sleep (never returns on hardware)
        self.rebooter = rebooter  # callable(): machine.reset
        if state is None:
            from fieldlink.runtime.state import State
            state = State()
        self.state = state
        self.counters = state.counters
        for k in COUNTERS:
            if k not in self.counters:
                self.counters[k] = 0
        self.features = {}  # sensor names and driver names (e.g. "synthetic") -> enabled
        self._feature_members = {}
        for sc in cfg.get("sensors", []):
            self.features[sc["name"]] = True
            self._feature_members[sc["name"]] = [sc["name"]]
            drv = sc.get("driver")
            if isinstance(drv, str) and drv not in self._feature_members:
                self.features[drv] = True
                self._feature_members[drv] = []
            if isinstance(drv, str) and drv != sc["name"]:
                self._feature_members[drv].append(sc["name"])
        # what goes to the gateway (readings, events, heartbeats) and its exactly-once state
        self.report = Reporter(link, state, self.counters, self.opt, self.log, clock, self.epoch_ms,
                               self.build_heartbeat)
        # battery level for heartbeats: options.battery = "sensor.quantity" names the reading (percent);
        # boards without it are mains powered and send no "bat"
        spec = self.opts.get("battery")
        self._batt = spec.split(".", 1) if isinstance(spec, str) and "." in spec else None
        self.battery = None  # last value of that reading
        self.cmds_seen = 0
        self._wake = None  # asyncio.Event-like flag for the telemetry task
        self._identify_until = None
        self._reboot_at = None
        link.on(T_COMMAND, self._on_cmd)
        link.on(T_TIME_SYNC, self._on_time)
        if relays is not None:
            try:
                relays.on_event = self._relay_event
            except Exception:
                pass

    # ------------------------------------------------------------------ reporting (node.report.Reporter)
    @property
    def pending(self):
        return self.report.pending

    @property
    def events(self):
        return self.report.events

    def telemetry_due(self, now):
        return self.report.telemetry_due(now)

    async def send_telemetry(self):
        return await self.report.send_telemetry()

    async def send_events(self):
        return await self.report.send_events()

    async def send_heartbeat(self):
        return await self.report.send_heartbeat()

    def build_heartbeat(self):
        m = {"up": self.uptime_s(), "boot": self.state.boot, "fw": VERSION, "role": "node",
             "relays": self.relay_state(), "c": {"tel_fail": self.counters["tel_fail"],
                                                 "invalid": self.counters["invalid"],
                                                 "crashes": self.sup.crashes,
                                                 "cmds": self.counters["cmds"]}}
        with_sleep(m, self.opt)
        m["bd"] = self.cfg.get("name")     # the board (its config name, e.g. "esp32-s3-devkitc-1")
        if self._batt is not None:
            m["bat"] = self.battery        # percent, None until the first reading
        app = self.app_version()
        if app:
            m["app"] = app[:31]            # the installed app version (the host's OTA compares it)
        return m

    def app_version(self):
        """The installed app version (fieldlink.ota.hook.OtaHook.app_version), None from source."""
        ota = getattr(self, "ota", None)  # set by fieldlink.main
        if ota is None:
            return None
        try:
            return ota.app_version()
        except Exception:
            return None

    # ------------------------------------------------------------------ helpers used by commands
    def count(self, name, n=1):
        self.counters[name] = self.counters.get(name, 0) + n

    def opt(self, key, default):
        v = self.opts.get(key, default)
        return v if isinstance(v, type(default)) else default

    def set_option(self, key, value):
        self.opts[key] = value
        self.state.extra[key] = value

    def relay_names(self):
        r = self.relays
        return list(r.names) if r is not None else []

    def relay_op(self, name, op, ms, reason):
        """Apply on/off/toggle/pulse through fieldlink.relays.Relays; returns the ACK result map."""
        r = self.relays
        try:
            if op == "on":
                done = r.set(name, True, reason)
            elif op == "off":
                done = r.set(name, False, reason)
            elif op == "toggle":
                done = r.toggle(name, reason)
            elif op == "pulse":
                done = r.pulse(name, ms, reason)
            else:
                return {"ok": False, "err": "bad_op", "op": op}
        except KeyError:
            return {"ok": False, "err": "unknown_relay", "name": name}
        except Exception as e:
            return {"ok": False, "err": "relay_error", "msg": exc_text(e)}
        out = {"ok": bool(done), "name": name, "on": r.state(name)}
        if not done:
            out["err"] = "min_switch"  # refused: switched too recently (min_switch_ms)
        return out

    def relay_state(self):
        r = self.relays
        if r is None:
            return {}
        try:
            return r.states()
        except Exception:
            return {}

    def set_interval(self, sensor, ms):
        if self.sensors is None:
            return False
        try:
            self.sensors.set_interval(sensor, ms)
            return True
        except (KeyError, ValueError):
            return False

    def set_feature(self, name, on):
        """Enable/disable a sensor by name, or every sensor of a driver (e.g. "synthetic")."""
        if name not in self.features:
            return False
        self.features[name] = on
        for member in self._feature_members.get(name, ()):
            if member != name and member in self.features:
                self.features[member] = on
            if self.sensors is not None:
                try:
                    self.sensors.enable(member, on)
                except (KeyError, ValueError):
                    return False
        return True

    def schedule_reboot(self, ms):
        self._reboot_at = ticks_add(self.clock(), ms)

    def identify(self, s):
        self._identify_until = ticks_add(self.clock(), s * 1000)

    def set_time(self, ts):
        self.set_epoch(ts)
        self.count("time_rx")

    def self_test(self):
        res = {"ok": True, "sensors": {}, "relays": len(self.relay_names())}
        if self.sensors is not None:
            for name in list(getattr(self.sensors, "order", ())):
                if not self.features.get(name, True):
                    continue
                try:
                    r = self.sensors.read(name, self.clock())
                    # a sensor still warming up (NotReady: an MQ135 heats for minutes) answered: it is
                    # there; an OTA trial must not roll back because of its preheat time
                    good = bool(r.get("valid")) or r.get("error") == "not_ready"
                except Exception:
                    good = False
                res["sensors"][name] = good
                if not good:
                    res["ok"] = False
        res["link"] = not getattr(self.link, "lost", False)
        return res

    def status(self):
        r = {"up": self.uptime_s(), "boot": self.state.boot, "fw": VERSION, "c": dict(self.counters),
             "relays": self.relay_state(), "feat": dict(self.features), "pending": len(self.pending),
             "crashes": self.sup.crashes, "time": self.epoch_ms(),
             "impl": native.impl()}
        ota = getattr(self, "ota", None)  # fieldlink.ota.hook.OtaHook, set by fieldlink.main
        if ota is not None:
            try:
                r["ota"] = ota.status()
            except Exception as e:
                r["ota"] = {"err": exc_text(e)}
        return r

    # ------------------------------------------------------------------ link callbacks
    def _on_cmd(self, mac, mtype, obj, msgid):
        self.cmds_seen += 1
        return commands.handle(self, obj)

    def _on_time(self, mac, mtype, obj, msgid):
        if isinstance(obj, dict) and isinstance(obj.get("ts"), int):
            self.set_time(obj["ts"])
        return None

    def _relay_event(self, ev):
        if isinstance(ev, dict) and ev.get("reason") == "boot":
            return
        self.emit("relay", "info", ev)

    def emit(self, ev, severity="info", data=None):
        # (boot, e) identifies the event like (boot, q) a telemetry message: a copy that reaches the host
        # again (repeated after a lost ACK, forwarded again by a rebooted gateway) is dropped there
        m = {"ev": ev, "sev": severity, "boot": self.state.boot, "e": self.state.next_event()}
        if data is not None:
            m["d"] = data
        self.report.add_event(m)

    # ------------------------------------------------------------------ sampling + rules
    async def sample(self, now=None):
        """Read every enabled sensor that is due (start, await conversion, collect); returns
        {name: {quantity: value}} of the valid readings and queues them for telemetry."""
        now = self.clock() if now is None else now
        out = {}
        s = self.sensors
        if s is None:
            return out
        for name in s.due(now):
            try:
                w = s.start(name, now)
                if w and w > 0:
                    await asleep_ms(w)
                r = s.collect(name, now)
            except Exception as e:
                self.log.warn("sensor %s: %s" % (name, exc_text(e)))
                r = None
            self.count("samples")
            if not isinstance(r, dict) or not r.get("valid"):
                self.count("invalid")
                continue
            v = {}
            for k in r:
                if k != "valid" and k != "error":
                    v[k] = r[k]
            out[name] = v
            self.report.add_reading(name, v, now)
            b = self._batt
            if b is not None and name == b[0] and b[1] in v:
                self.battery = v[b[1]]
        return out

    def run_rules(self, now, readings):
        if self.rules is None:
            return []
        try:
            actions = self.rules.tick(now, readings) or []
        except Exception as e:
            self.count("rules_errors")
            self.log.error("rules: %s" % exc_text(e))
            return []
        for act in actions:
            self.apply_action(act)
        return actions

    def apply_action(self, act):
        if not isinstance(act, dict):
            return
        self.count("actions")
        if "relay" in act:
            op = act.get("op", "on")
            res = self.relay_op(act["relay"], op, act.get("ms", 1000), "rule")
            if not res.get("ok"):
                self.emit("rule_relay_refused", "warn", {"relay": act["relay"], "err": res.get("err")})
        elif "event" in act:
            self.emit(act["event"], act.get("severity", "info"), act.get("data"))
        elif "interval" in act:
            v = act["interval"]
            if isinstance(v, int) and v >= 100:
                sensor = act.get("sensor")
                if sensor:
                    self.set_interval(sensor, v)
                else:
                    self.set_option("batch_ms", v)
        elif "sleep_ms" in act:
            v = act["sleep_ms"]
            if isinstance(v, int) and v >= 0:
                self.set_option("sleep_ms", v)
        elif "set" in act:
            self.state.extra["v_" + str(act["set"])] = act.get("value")

    async def tick(self, now=None):
        """One sampling tick: sample due sensors, rules hook, relay timers, identify LED, reboot."""
        now = self.clock() if now is None else now
        readings = await self.sample(now)
        self.run_rules(now, readings)
        if self.relays is not None:
            try:
                self.relays.tick(now)
            except Exception as e:
                self.log.error("relays.tick: %s" % exc_text(e))
        if self._identify_until is not None and self.led is not None:
            if ticks_diff(self._identify_until, now) > 0:
                self.led.value((now // 250) & 1)
            else:
                self.led.value(0)
                self._identify_until = None
        if self._reboot_at is not None and ticks_diff(now, self._reboot_at) >= 0:
            self._reboot_at = None
            self.reboot()
        return readings

    def reboot(self):
        self.log.info("reboot")
        self.state.save_file()
        if self.rebooter is not None:
            self.rebooter()

    async def _join_task(self):
        delay = 500
        while self._running:
            link = self.link
            if not getattr(link, "paired", True):
                ok = False
                try:
                    ok = await link.join(self.opt("join_timeout_ms", 3000))
                except LinkError:
                    ok = False
                if ok:
                    self.count("joins")
                    delay = 500
                    await self.send_heartbeat()
                else:
                    self.count("join_fail")
                    await asleep_ms(delay)
                    delay = min(delay * 2, self.opt("join_backoff_max_ms", 30000))
                continue
            # a paired node that lost its gateway is rescanned by the link's own run loop
            await asleep_ms(500)

    async def _sample_task(self):
        tick_ms = self.opt("tick_ms", 100)
        while self._running:
            await self.tick()
            await asleep_ms(tick_ms)

    async def _telemetry_task(self):
        while self._running:
            if getattr(self.link, "paired", True):
                if self.events:
                    await self.send_events()
                if self.telemetry_due(self.clock()):
                    if not await self.send_telemetry():
                        await asleep_ms(1000)
            await asleep_ms(100)

    async def _heartbeat_task(self):
        while self._running:
            if getattr(self.link, "paired", True):
                await self.send_heartbeat()
            await asleep_ms(self.opt("heartbeat_s", 30) * 1000)

    def start(self):
        for k, v in self.state.extra.items():
            if k in commands.CONFIG_KEYS:
                self.opts[k] = v
        self.spawn_base()
        self.sup.spawn("join", self._join_task)
        self.sup.spawn("sample", self._sample_task)
        self.sup.spawn("telemetry", self._telemetry_task)
        self.sup.spawn("heartbeat", self._heartbeat_task)

    def stop(self):
        self.stop_base()

    async def run(self):
        if self.opt("sleep_ms", 0) > 0 and self.sleeper is not None:
            await self.run_sleep_cycle()
            return
        self.start()
        await self.idle()

    async def run_sleep_cycle(self):
        """Battery mode: one wake cycle, then deep sleep (sleeper never returns on hardware)."""
        self._running = True
        link_task = asyncio.create_task(self.link.run())
        try:
            if not getattr(self.link, "paired", True):
                try:
                    await self.link.join(self.opt("join_timeout_ms", 3000))
                except LinkError:
                    pass
            now = self.clock()
            await self.tick(now)
            sent = await self.send_telemetry()
            await self.send_events()
            if not sent or self.state.seq % max(1, self.opt("hb_every_wakes", 10)) == 0:
                await self.send_heartbeat()
            # stay awake for the commands the gateway said it holds for us
            t0 = self.clock()
            awake = self.opt("awake_ms", 1500)
            while self.report.expect_cmds > 0 and self.cmds_seen < self.report.expect_cmds and ticks_diff(self.clock(), t0) < awake:
                await asleep_ms(20)
            # and for an update the gateway holds (or that is running): it may continue at the next wake
            ota = getattr(self, "ota_link", None)
            limit = self.opt("ota_awake_ms", 60000)
            while ota is not None and ticks_diff(self.clock(), t0) < limit and (
                    ota.stay_awake(self.clock()) or (self.report.expect_ota and ticks_diff(self.clock(), t0) < 3000)):
                await asleep_ms(20)
            while self._reboot_at is not None and ticks_diff(self.clock(), t0) < awake:
                await self.tick()
                await asleep_ms(20)
        finally:
            self.stop_link()
            link_task.cancel()
        self.state.save_rtc()
        self.sleeper(self.opt("sleep_ms", 0))
