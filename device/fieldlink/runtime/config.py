# Board configuration (/board.json, written by the host from boards/*.toml, see docs/boards.md).
# The persisted boot id/sequence/counters are in fieldlink.runtime.state.
#
#   cfg = load("/board.json")       -> dict, validated; ConfigError with a clear message otherwise
#   safe_relay_pins(cfg)            -> [(pin, active_high)] for relays driven by plain GPIOs
import json

from fieldlink.runtime import store

ROLES = ("node", "gateway")
LAST_GOOD_SUFFIX = ".last"


class ConfigError(Exception):
    pass


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


_PIN_KIND = ("an integer", "a CircuitPython pin name")


def _cpy(cfg):
    return 1 if cfg.get("runtime") == "circuitpython" else 0


def _is_pin(cfg, v):
    """A GPIO number (MicroPython) or a board pin name such as "D5" (CircuitPython boards)."""
    return (isinstance(v, str) and v != "") if _cpy(cfg) else _is_int(v)


def validate(cfg, where="board.json"):
    """Check the structure the roles rely on; returns cfg or raises ConfigError naming the problem."""
    if not isinstance(cfg, dict):
        raise ConfigError("%s: top level must be an object, got %s" % (where, type(cfg).__name__))
    name = cfg.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError("%s: missing or empty 'name'" % where)
    role = cfg.get("role")
    if role not in ROLES:
        raise ConfigError("%s: 'role' must be one of %s, got %r" % (where, ", ".join(ROLES), role))
    for key, typ in (("relays", list), ("sensors", list), ("i2c", list), ("pins", dict), ("options", dict)):
        if key in cfg and not isinstance(cfg[key], typ):
            raise ConfigError("%s: '%s' must be a %s" % (where, key, "list" if typ is list else "object"))
    seen = []
    for i, r in enumerate(cfg.get("relays", [])):
        if not isinstance(r, dict) or not isinstance(r.get("name"), str):
            raise ConfigError("%s: relays[%d] needs a string 'name'" % (where, i))
        if r["name"] in seen:
            raise ConfigError("%s: duplicate relay name %r" % (where, r["name"]))
        seen.append(r["name"])
        if "pin" in r and not _is_pin(cfg, r["pin"]):
            raise ConfigError("%s: relays[%d].pin must be %s" % (where, i, _PIN_KIND[_cpy(cfg)]))
        if "pin" not in r and "hc595_bit" not in r:
            raise ConfigError("%s: relays[%d] needs 'pin' or 'hc595_bit'" % (where, i))
    for i, s in enumerate(cfg.get("sensors", [])):
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not isinstance(s.get("driver"), str):
            raise ConfigError("%s: sensors[%d] needs string 'name' and 'driver'" % (where, i))
        if "interval_ms" in s and (not _is_int(s["interval_ms"]) or s["interval_ms"] < 1):
            raise ConfigError("%s: sensors[%d].interval_ms must be a positive integer" % (where, i))
    return cfg


def parse(text, where="board.json"):
    try:
        cfg = json.loads(text)
    except (ValueError, RuntimeError, MemoryError) as e:  # RuntimeError: nested too deeply
        raise ConfigError("%s: not valid JSON (%s)" % (where, e))
    return validate(cfg, where)


def load(path="/board.json", last=None):
    """Read and validate the board config; ConfigError for a missing, unreadable or invalid file.
    A good config is copied to `last` (default path + ".last") for load_last_good()."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError("%s: cannot read (%s)" % (path, e))
    cfg = parse(text, path)
    _save_last_good(last or path + LAST_GOOD_SUFFIX, text)
    return cfg


def _save_last_good(p, text):
    # keep a copy so that a later corrupt config still tells us which relay pins to hold off
    old = store.read(p, "last good board config", False)
    if old == text:
        return
    try:
        store.write(p, text)
    except OSError as e:
        store.warn("cannot keep the last good board config in %s (%s)" % (p, e))


def load_last_good(path="/board.json", last=None):
    """The last good config saved by load() (at `last`, default path + ".last"), or None."""
    try:
        return load_quiet(last or path + LAST_GOOD_SUFFIX)
    except ConfigError:
        return None


def load_quiet(path):
    try:
        with open(path) as f:
            return parse(f.read(), path)
    except OSError as e:
        raise ConfigError("%s: cannot read (%s)" % (path, e))


def option(cfg, key, default):
    opts = cfg.get("options") or {}
    v = opts.get(key, default)
    if _is_int(default) and not _is_int(v):
        return default
    return v


def safe_relay_pins(cfg):
    """[(pin, active_high)] of GPIO relays (shift-register relays are handled by fieldlink.relays)."""
    out = []
    if not isinstance(cfg, dict):
        return out
    for r in cfg.get("relays", []) or []:
        if isinstance(r, dict) and "pin" in r and _is_pin(cfg, r["pin"]):
            out.append((r["pin"], r.get("active", "high") != "low"))
    return out
