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

import asyncio

from fieldlink.runtime import config
from fieldlink.runtime import store as st
from fieldlink.runtime.platform import say, unix
from fieldlink.runtime.tasks import exc_text, print_exc

BOARD_JSON = "board.json"
STORE_DIR = "fl/data"  # the store, relative to the root of the board's filesystem
LAST_GOOD = "board.json.last"  # last good board config, in the store (config in an app slot)


def _root(name):
    """A path at the root of the board's filesystem: absolute on a board, relative to the working
    directory on the unix port (the virtual board's directory; "/" would be the host's root)."""
    return name if unix() else "/" + name


DEFAULT_STORE = _root(STORE_DIR)


def _getenv(name):
    try:
        import os
        return os.getenv(name)
    except Exception:
        return None


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
    if d is not None and st.exists(st.join(d, BOARD_JSON)):
        return st.join(d, BOARD_JSON)
    return _root(BOARD_JSON)


def app_dir(config_path):
    """Where the app's bundled files (rules/) are: the active slot, else the config's directory."""
    d = slot_dir()
    if d is not None:
        return d
    return st.dirname(config_path)


def last_good_path(config_path, store):
    """Where load() keeps the last good config: nothing is written into an app slot (deploy and OTA
    replace slots, and a changed slot no longer matches its bundle), so a slot's config is copied to
    <store>/board.json.last; any other config to <config>.last."""
    if store and slot_dir(st.dirname(config_path)) is not None:
        return st.join(store, LAST_GOOD)
    return config_path + config.LAST_GOOD_SUFFIX


def _sleep_s(s, wdt=None):
    import time
    for _ in range(int(s * 10)):
        if wdt is not None:
            wdt.feed()
        time.sleep(0.1)


def _wdt(cfg):
    ms = config.option(cfg, "wdt_ms", 30000) if cfg else 30000
    if ms <= 0:
        return None
    try:
        from fieldlink.port.active import port
        return port().wdt(ms)
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
    if last is None or not last.get("relays"):
        return None     # nothing to hold (a board without relays does not carry fieldlink.relays)
    try:
        return make_relays(last, None, restore=False)
    except Exception as e:
        say("cannot drive relays safe: %s" % exc_text(e))
        return None


def role_start(role):
    """start(cfg, store, relays, wdt, app, uplink) -> role object, from fieldlink.<role>.start. Imported by
    name so a board carries only its own role: `fieldlink build` adds fieldlink.<role>.start to the
    bundle's import graph (docs/deploy.md "Per-role bundles")."""
    return __import__("fieldlink.%s.start" % role, None, None, ("start",)).start


async def _role_main(role_obj, ota=None):
    if ota is not None:  # an update on trial (self-test, confirm or roll back) or a rollback to report
        asyncio.create_task(ota.supervise(role_obj, _reset))
    await role_obj.run()


def _reset():
    try:
        from fieldlink.port.active import port
        reset = port().reset_fn()
    except Exception:
        reset = None
    if reset is not None:
        reset()
    raise SystemExit(1)  # no machine module: end the process so the supervisor restarts it


def ota_hook(cfg, store, app=None):
    """fieldlink.ota's boot side (None in a bundle without it): trust the bundle's owner key on first
    boot, report rollbacks, detect a trial, finish a switch a power cut interrupted (-> reset)."""
    try:
        from fieldlink.ota.hook import OtaHook
    except ImportError:
        return None
    try:
        hook = OtaHook(store, slot_dir(), cfg.get("name"), app=app)
        r = hook.boot()
    except Exception as e:
        say("ota: boot check failed: %s" % exc_text(e))
        return None
    if r and r.get("reboot"):
        say("ota: completing an interrupted switch: resetting")
        _reset()
    return hook


def run(config_path=None, role=None, uplink=None, store=None, retry_s=5, max_attempts=None):
    """Start the board. Arguments override the defaults/environment ($FIELDLINK_BOARD, $FIELDLINK_UPLINK,
    $FIELDLINK_STORE); max_attempts bounds the retry loops (tests), None = forever."""
    path = find_config(config_path)
    uplink = uplink or _getenv("FIELDLINK_UPLINK")
    store = store or _getenv("FIELDLINK_STORE") or DEFAULT_STORE
    st.makedirs(store)
    last = last_good_path(path, store)
    app = app_dir(path)
    attempts = 0
    backoff = retry_s
    wdt = None
    ota = False  # not looked at yet
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
        if ota is False:
            ota = ota_hook(cfg, store, app)
        try:
            obj = role_start(r)(cfg, store, relays, wdt, app, uplink)
            if ota is not None:
                obj.ota = ota
            asyncio.run(_role_main(obj, ota if ota is not None and ota.pending() else None))
            backoff = retry_s
        except KeyboardInterrupt:
            if relays is not None:
                relays.all_off()
            raise
        except Exception as e:
            say("%s role stopped: %s" % (r, exc_text(e)))
            print_exc(e, sys.stderr)
            if ota is not None and ota.crashed("crash: %s" % exc_text(e)):
                say("ota: the update crashed on its trial boot: rolling back")
                if relays is not None:
                    relays.all_off()
                _reset()
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
