# Device entry point: fieldlink.main.run() (called from the slot's main module on the board, or by the
# virtual board). See docs/roles.md "Starting" and docs/deploy.md "Device layout".
#
#   1. find and read the board config: run(path) > $FIELDLINK_BOARD > board.json of the active app slot
#      (sys.path[0] when it ends with /fl/a or /fl/b, put there by the boot.py loader) > /board.json
#      (relative board.json on the unix port, whose working directory is the board's directory)
#   2. relays to their safe state FIRST (fieldlink.relays.Relays drives every output OFF in its
#      constructor); with an unreadable/corrupt config the last good copy still tells which relays to
#      hold off (kept in the store when the config lives in an app slot, else next to the config)
#   3. node: the rules engine (program hot-swapped into the store, else the slot's bundled rules/*.bin)
#   4. start the role from the config ("node" or "gateway") in asyncio
# State (relays, node/gateway state, link peers, hot-swapped rules) lives in the store, fl/data, outside
# the app slots, so it survives app updates. A bad config prints a clear error and retries every retry_s
# seconds (feeding the watchdog); a role that dies is logged, its relays are switched off, and it is
# restarted with backoff. Nothing here ever crash-loops with relays left on.
import sys

try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio

from fieldlink.runtime import config
from fieldlink.runtime.state import State
from fieldlink.runtime.tasks import Log, exc_text, print_exc

BOARD_JSON = "board.json"
STORE_DIR = "fl/data"  # the store, relative to the root of the board's filesystem
RULES_FILE = "rules.bin"  # hot-swapped rules program, in the store
RULES_DIR = "rules"  # bundled rules programs (*.bin), in the app slot
LAST_GOOD = "board.json.last"  # last good board config, in the store (config in an app slot)


def _unix():
    return sys.platform in ("linux", "darwin")


def _root(name):
    """A path at the root of the board's filesystem: absolute on a board, relative to the working
    directory on the unix port (the virtual board's directory; "/" would be the host's root)."""
    return name if _unix() else "/" + name


DEFAULT_STORE = _root(STORE_DIR)


def say(msg):
    """Human-readable status: stderr on the unix port (stdout may be the uplink), console elsewhere."""
    try:
        if sys.platform in ("linux", "darwin"):
            sys.stderr.write("fieldlink: %s\n" % msg)
        else:
            print("fieldlink: %s" % msg)
    except Exception:
        pass


def _getenv(name):
    try:
        import os
        return os.getenv(name)
    except Exception:
        return None


def _exists(path):
    try:
        import os
        os.stat(path)
        return True
    except OSError:
        return False


def _dirname(path):
    i = path.rfind("/")
    if i < 0:
        return ""
    return path[:i] if i > 0 else "/"


def _join(d, name):
    if not d or d == ".":
        return name
    return d + name if d.endswith("/") else d + "/" + name


def slot_dir(d=None):
    """The app slot directory d (default sys.path[0], where the boot.py loader puts the active slot) if
    it is one (ends with /fl/a or /fl/b), else None."""
    if d is None:
        d = sys.path[0] if sys.path else ""
    if not isinstance(d, str):
        return None
    d = d.rstrip("/")
    if d in ("fl/a", "fl/b") or d.endswith("/fl/a") or d.endswith("/fl/b"):
        return d
    return None


def find_config(path=None):
    """The board config to use: path > $FIELDLINK_BOARD > the active slot's board.json > /board.json
    (relative board.json on the unix port)."""
    if path:
        return path
    env = _getenv("FIELDLINK_BOARD")
    if env:
        return env
    d = slot_dir()
    if d is not None and _exists(_join(d, BOARD_JSON)):
        return _join(d, BOARD_JSON)
    return _root(BOARD_JSON)


def app_dir(config_path):
    """Where the app's bundled files (rules/) are: the active slot, else the config's directory."""
    d = slot_dir()
    if d is not None:
        return d
    return _dirname(config_path)


def last_good_path(config_path, store):
    """Where load() keeps the last good config: nothing is written into an app slot (deploy and OTA
    replace slots, and a changed slot no longer matches its bundle), so a slot's config is copied to
    <store>/board.json.last; any other config to <config>.last."""
    if store and slot_dir(_dirname(config_path)) is not None:
        return _join(store, LAST_GOOD)
    return config_path + config.LAST_GOOD_SUFFIX


def _mkdir(path):
    import os
    parts = path.split("/")
    cur = ""
    for p in parts:
        if not p:
            cur = "/" if not cur else cur
            continue
        cur = (cur.rstrip("/") + "/" + p) if cur else p
        if not _exists(cur):
            try:
                os.mkdir(cur)
            except OSError:
                pass


def _sleep_s(s, wdt=None):
    import time
    for _ in range(int(s * 10)):
        if wdt is not None:
            wdt.feed()
        time.sleep(0.1)


def _machine():
    try:
        import machine
        return machine
    except ImportError:
        return None


def _wdt(cfg):
    m = _machine()
    if m is None or not hasattr(m, "WDT"):
        return None
    ms = config.option(cfg, "wdt_ms", 30000) if cfg else 30000
    if ms <= 0:
        return None
    try:
        return m.WDT(timeout=ms)
    except Exception:
        return None


def make_relays(cfg, store, restore=True):
    """Relays from the board config; every output is OFF when this returns (restore applies after)."""
    from fieldlink.relays import FileStore, Relays
    fs = FileStore(store + "/relays.json") if store else None
    return Relays(cfg, store=fs, restore=restore)


def hold_safe(path, store):
    """Config unusable: drive the relays named in the last good config OFF (no restore)."""
    last = config.load_last_good(path, last_good_path(path, store))
    if last is None:
        return None
    try:
        return make_relays(last, None, restore=False)
    except Exception as e:
        say("cannot drive relays safe: %s" % exc_text(e))
        return None


def radio(cfg):
    """(wlan, esp, mac): Wi-Fi station interface up (not connected) and ESP-NOW active."""
    import espnow
    import network
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    try:
        wlan.disconnect()
    except Exception:
        pass
    esp = espnow.ESPNow()
    esp.active(True)
    return wlan, esp, bytes(wlan.config("mac"))


def link_kw(cfg, wlan, store):
    opts = cfg.get("options") or {}
    kw = {"wlan": wlan, "store": store, "net_id": int(opts.get("net_id", 1))}
    pmk = opts.get("pmk")
    if isinstance(pmk, str) and len(pmk) == 32:
        import binascii
        kw["pmk"] = binascii.unhexlify(pmk)
    return kw


def make_transport(uplink):
    from fieldlink.gateway import uplink as up
    if uplink and uplink != "stdio":
        return up.FileTransport(uplink)
    if sys.platform not in ("linux", "darwin"):
        up.detach_repl()  # hardware: USB CDC belongs to the uplink now
    return up.StdioTransport()


def build_gateway(cfg, store, uplink=None, wdt=None, esp_mac=None):
    from fieldlink.gateway.role import Gateway
    from fieldlink.link.gateway_link import GatewayLink
    from fieldlink.gateway.uplink import Uplink
    opts = cfg.get("options") or {}
    state = State(store + "/gw_state.json")
    log = Log("gw")
    up = Uplink(make_transport(uplink), boot=state.boot, capacity=int(opts.get("ring_buffer", 256)),
                window=int(opts.get("uplink_window", 16)), host_timeout_ms=int(opts.get("host_timeout_ms", 3000)),
                max_frame=int(opts.get("uplink_max_frame", 1024)), log=log)

    def sink(lvl, text):  # warnings and errors go to the host; stderr stays free on the unix port
        if lvl in ("warn", "error"):
            up.send({"t": "log", "lvl": lvl, "msg": text})
        if sys.platform in ("linux", "darwin"):
            sys.stderr.write("[gw] %s: %s\n" % (lvl, text))
    log.sink = sink
    wlan, esp, mac = esp_mac or radio(cfg)
    link = GatewayLink(esp, mac, channel=int(opts.get("channel", 1)), **link_kw(cfg, wlan, store))
    return Gateway(cfg, link, up, log=log, boot=state.boot, wdt=wdt)


def build_node(cfg, store, relays, wdt=None, radio_parts=None, rules=None):
    from fieldlink.link.node_link import NodeLink
    from fieldlink.node.role import Node
    from fieldlink.node.sensors import SensorManager
    opts = cfg.get("options") or {}
    m = _machine()
    rtc = None
    deep_wake = False
    sleeper = None
    rebooter = None
    led = None
    if m is not None:
        try:
            rtc = m.RTC()
        except Exception:
            rtc = None
        try:
            deep_wake = m.reset_cause() == m.DEEPSLEEP_RESET
        except Exception:
            deep_wake = False
        sleeper = getattr(m, "deepsleep", None)
        rebooter = getattr(m, "reset", None)
        pin = (cfg.get("pins") or {}).get("status_led")
        if isinstance(pin, int):
            try:
                led = m.Pin(pin, m.Pin.OUT, value=0)
            except Exception:
                led = None
    state = State(store + "/node_state.json", rtc=rtc, deep_wake=deep_wake)
    wlan, esp, mac = radio_parts or radio(cfg)
    kw = link_kw(cfg, wlan, store)
    chans = opts.get("channels")
    if isinstance(chans, list):
        kw["channels"] = chans
    link = NodeLink(esp, mac, **kw)
    sensors = SensorManager(cfg)
    node = Node(cfg, link, sensors=sensors, relays=relays, state=state, wdt=wdt, rules=rules, led=led,
                sleeper=sleeper, rebooter=rebooter)
    attach_clock(rules, node, cfg)
    return node


DAY_MS = 86400000


def attach_clock(rules, node, cfg):
    """Give the rules engine local time of day for schedules (`between`): the node's epoch clock (set by
    the gateway's time_sync) shifted by options.tz_offset_min. Until the first time_sync the time is
    unknown and schedule conditions are false (docs/rules.md)."""
    if rules is None or not hasattr(rules, "tod_source") or rules.tod_source is not None:
        return
    tz_ms = int((cfg.get("options") or {}).get("tz_offset_min", 0)) * 60000

    def tod():
        e = node.epoch_ms()
        if e is None:
            return None
        return (e + tz_ms) % DAY_MS

    rules.tod_source = tod


def bundled_rules(app):
    """Bundled rules programs of an app directory: the paths of rules/*.bin, sorted by name."""
    d = _join(app, RULES_DIR) if app else RULES_DIR
    try:
        import os
        names = os.listdir(d)
    except OSError:
        return []
    return [_join(d, n) for n in sorted(names) if n.endswith(".bin")]


def make_rules(cfg, store, app=None):
    """The node's RuleEngine (fieldlink.rules.engine), persisted at <store>/rules.bin. Program: the one
    persisted there by a hot swap (rules_load) if it verifies, else the bundled program (the first
    rules/*.bin of the app directory by name, not persisted), else none (a later rules_load installs
    one). Every problem is reported and the node runs on; None only if the engine cannot be created."""
    try:
        from fieldlink.rules.engine import RuleEngine
        eng = RuleEngine(path=_join(store, RULES_FILE) if store else None, restore=True)
    except Exception as e:
        say("rules engine not started: %s" % exc_text(e))
        return None
    if eng.prog is not None:
        say("rules: %s loaded (persisted, %d rules, %d bytes)" % (eng.path, len(eng.prog.rule_names),
                                                                  len(eng.prog.raw)))
        return eng
    if eng.last_error:
        say("rules: %s: %s" % (eng.path, eng.last_error))
    files = bundled_rules(app)
    if not files:
        say("rules: no program (none persisted in %s, none bundled in %s)" % (store, _join(app, RULES_DIR)))
        return eng
    if len(files) > 1:
        say("rules: several bundled programs, using %s (ignored: %s)" % (files[0], ", ".join(files[1:])))
    p = files[0]
    try:
        with open(p, "rb") as f:
            blob = f.read()
        prog = eng.load(blob, persist=False)
    except Exception as e:
        eng.last_error = "bundled program %s rejected: %s" % (p, exc_text(e))
        say("rules: %s; running without rules" % eng.last_error)
        return eng
    say("rules: %s loaded (bundled, %d rules, %d bytes)" % (p, len(prog.rule_names), len(prog.raw)))
    return eng


async def _role_main(role_obj):
    await role_obj.run()


def run(config_path=None, role=None, uplink=None, store=None, retry_s=5, max_attempts=None):
    """Start the board. Arguments override the defaults/environment ($FIELDLINK_BOARD, $FIELDLINK_UPLINK,
    $FIELDLINK_STORE); max_attempts bounds the retry loops (tests), None = forever."""
    path = find_config(config_path)
    uplink = uplink or _getenv("FIELDLINK_UPLINK")
    store = store or _getenv("FIELDLINK_STORE") or DEFAULT_STORE
    _mkdir(store)
    last = last_good_path(path, store)
    app = app_dir(path)
    attempts = 0
    backoff = retry_s
    wdt = None
    while max_attempts is None or attempts < max_attempts:
        attempts += 1
        try:
            cfg = config.load(path, last)
        except config.ConfigError as e:
            say("board config error: %s" % e)
            say("relays held OFF; retrying in %d s" % retry_s)
            hold_safe(path, store)
            if wdt is None:
                wdt = _wdt(None)
            _sleep_s(retry_s, wdt)
            continue
        relays = None
        try:
            relays = make_relays(cfg, store) if cfg.get("relays") else None
        except Exception as e:
            say("relay setup failed: %s" % exc_text(e))
            hold_safe(path, store)
            _sleep_s(retry_s, wdt)
            continue
        if wdt is None:
            wdt = _wdt(cfg)
        r = role or cfg["role"]
        say("board %s (%s) from %s, store %s: starting the %s role" % (cfg["name"], cfg["role"], path, store, r))
        try:
            if r == "gateway":
                obj = build_gateway(cfg, store, uplink, wdt)
            else:
                obj = build_node(cfg, store, relays, wdt, rules=make_rules(cfg, store, app))
            asyncio.run(_role_main(obj))
            backoff = retry_s
        except KeyboardInterrupt:
            if relays is not None:
                relays.all_off()
            raise
        except Exception as e:
            say("%s role stopped: %s" % (r, exc_text(e)))
            print_exc(e, sys.stderr)
            if relays is not None:
                try:
                    relays.all_off()
                except Exception:
                    pass
            _sleep_s(backoff, wdt)
            backoff = min(backoff * 2, 300)
            try:
                asyncio.new_event_loop()
            except Exception:
                pass
    return attempts
