# Device entry point: fieldlink.main.run() (called from main.py on the board, or by the virtual board).
#
#   1. read the board config (/board.json, or the path given / $FIELDLINK_BOARD)
#   2. relays to their safe state FIRST (fieldlink.relays.Relays drives every output OFF in its
#      constructor); with an unreadable/corrupt config the last good copy (/board.json.last) still tells
#      which relays to hold off
#   3. start the role from the config ("node" or "gateway") in asyncio
# A bad config prints a clear error and retries every retry_s seconds (feeding the watchdog); a role that
# dies is logged, its relays are switched off, and it is restarted with backoff. Nothing here ever
# crash-loops with relays left on.
import sys

try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio

from fieldlink import config
from fieldlink.tasks import Log, exc_text, print_exc

DEFAULT_STORE = "/fl"


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
    last = config.load_last_good(path)
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
    from fieldlink import uplink as up
    if uplink and uplink != "stdio":
        return up.FileTransport(uplink)
    if sys.platform not in ("linux", "darwin"):
        up.detach_repl()  # hardware: USB CDC belongs to the uplink now
    return up.StdioTransport()


def build_gateway(cfg, store, uplink=None, wdt=None, esp_mac=None):
    from fieldlink.gateway import Gateway
    from fieldlink.link import GatewayLink  # noqa: F401  (attribute set by fieldlink.pairing)
    from fieldlink import pairing
    from fieldlink.uplink import Uplink
    opts = cfg.get("options") or {}
    state = config.State(store + "/gw_state.json")
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
    link = pairing.GatewayLink(esp, mac, channel=int(opts.get("channel", 1)), **link_kw(cfg, wlan, store))
    return Gateway(cfg, link, up, log=log, boot=state.boot, wdt=wdt)


def build_node(cfg, store, relays, wdt=None, radio_parts=None, rules=None):
    from fieldlink import pairing
    from fieldlink.node import Node
    from fieldlink.sensors import SensorManager
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
    state = config.State(store + "/node_state.json", rtc=rtc, deep_wake=deep_wake)
    wlan, esp, mac = radio_parts or radio(cfg)
    kw = link_kw(cfg, wlan, store)
    chans = opts.get("channels")
    if isinstance(chans, list):
        kw["channels"] = chans
    link = pairing.NodeLink(esp, mac, **kw)
    sensors = SensorManager(cfg)
    node = Node(cfg, link, sensors=sensors, relays=relays, state=state, wdt=wdt, rules=rules, led=led,
                sleeper=sleeper, rebooter=rebooter)
    return node


def make_rules(cfg, store):
    """Rules engine seam: None until a rules runtime is installed (node.rules may be set later)."""
    try:
        from fieldlink.rules import runtime
    except ImportError:
        return None
    try:
        return runtime.from_config(cfg, store)
    except Exception as e:
        say("rules engine not started: %s" % exc_text(e))
        return None


async def _role_main(role_obj):
    await role_obj.run()


def run(config_path=None, role=None, uplink=None, store=None, retry_s=5, max_attempts=None):
    """Start the board. Arguments override the defaults/environment ($FIELDLINK_BOARD, $FIELDLINK_UPLINK,
    $FIELDLINK_STORE); max_attempts bounds the retry loops (tests), None = forever."""
    path = config_path or _getenv("FIELDLINK_BOARD") or "/board.json"
    uplink = uplink or _getenv("FIELDLINK_UPLINK")
    store = store or _getenv("FIELDLINK_STORE") or DEFAULT_STORE
    _mkdir(store)
    attempts = 0
    backoff = retry_s
    wdt = None
    while max_attempts is None or attempts < max_attempts:
        attempts += 1
        try:
            cfg = config.load(path)
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
        try:
            if r == "gateway":
                obj = build_gateway(cfg, store, uplink, wdt)
            else:
                obj = build_node(cfg, store, relays, wdt, rules=make_rules(cfg, store))
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
