# Start the node role from the board config (called by fieldlink.main.run through role_start): the
# rules engine (hot-swapped program in the store, else the slot's bundled rules/*.bin), the NodeLink,
# the sensors, the Node. Everything the node bundle carries is reachable from here.
from fieldlink.link.node_link import NodeLink
from fieldlink.link.radio import link_kw, radio
from fieldlink.node.role import Node
from fieldlink.node.sensors import SensorManager
from fieldlink.runtime import store as st
from fieldlink.port.active import port
from fieldlink.runtime.platform import say
from fieldlink.runtime.state import State
from fieldlink.runtime.tasks import exc_text

_held = []  # outputs that must stay configured (a dropped CircuitPython DigitalInOut could be reset)
RULES_FILE = "rules.bin"  # hot-swapped rules program, in the store
RULES_DIR = "rules"  # bundled rules programs (*.bin), in the app slot


def build_node(cfg, store, relays, wdt=None, radio_parts=None, rules=None):
    opts = cfg.get("options") or {}
    p = port()
    rtc = p.rtc()
    deep_wake = p.woke_from_deepsleep()
    sleeper = p.deepsleep_fn()
    rebooter = p.reset_fn()
    led = None
    pins = cfg.get("pins") or {}
    for key, level in (("i2c_power", 1), ("status_led", 0)):  # i2c_power: e.g. the Feather's STEMMA QT
        pin = pins.get(key)
        if pin is None or isinstance(pin, bool):
            continue
        try:
            out = p.out_pin(pin, level)
        except Exception:
            continue
        if key == "status_led":
            led = out
        else:
            _held.append(out)
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
    if store:
        try:    # OTA chunks from the gateway (a bundle without fieldlink.ota takes updates over USB only)
            from fieldlink.ota.transfer_node import NodeOtaLink, ota_credit
            node.ota_link = NodeOtaLink(node, store + "/ota_rx", credit=ota_credit(esp))
        except ImportError:
            pass
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
    d = st.join(app, RULES_DIR) if app else RULES_DIR
    try:
        import os
        names = os.listdir(d)
    except OSError:
        return []
    return [st.join(d, n) for n in sorted(names) if n.endswith(".bin")]


def make_rules(cfg, store, app=None):
    """The node's RuleEngine (fieldlink.rules.engine), persisted at <store>/rules.bin. Program: the one
    persisted there by a hot swap (rules_load) if it verifies, else the bundled program (the first
    rules/*.bin of the app directory by name, not persisted), else none (a later rules_load installs
    one). Every problem is reported and the node runs on; None only if the engine cannot be created."""
    refused = persisted_rules_refusal(cfg, store)
    if refused:
        say("rules: persisted program not loaded: %s" % refused)
    try:
        from fieldlink.rules.engine import RuleEngine  # a broken engine must not stop the node
        eng = RuleEngine(path=st.join(store, RULES_FILE) if store else None, restore=not refused)
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
        say("rules: no program (none persisted in %s, none bundled in %s)" % (store, st.join(app, RULES_DIR)))
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


def persisted_rules_refusal(cfg, store):
    """Why the program persisted in the store may not run (an owner key is installed and it is not
    signed for this board: docs/ota.md "Rules"), or None. The file is left where it is."""
    if not store:
        return None
    try:
        from fieldlink.ota import rules_sig
        from fieldlink.ota.updater import OtaError
    except ImportError:  # a bundle without fieldlink.ota
        return None
    blob = st.read(st.join(store, RULES_FILE), "rules program")
    if blob is None:
        return None
    try:
        rules_sig.check(store, blob, cfg.get("name"), rules_sig.envelope(store))
    except OtaError as e:
        return str(e)
    return None


def start(cfg, store, relays, wdt, app, uplink):
    """The Node for this board, with its rules engine."""
    return build_node(cfg, store, relays, wdt, rules=make_rules(cfg, store, app))
