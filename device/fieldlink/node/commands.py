# Node command handlers. Every command returns a result map that travels back in the link ACK
# (docs/roles.md "Commands"): {"ok": True, ...} on success, {"ok": False, "err": "<code>", ...} when the
# command was understood but refused (bad arguments, interlock, unknown relay ...). Handlers never raise
# for bad input; an unexpected exception is turned into {"ok": False, "err": "exception", "msg": ...}.
from fieldlink.runtime.tasks import exc_text

# config keys a host may change at run time, with (min, max)
CONFIG_KEYS = {
    "heartbeat_s": (1, 86400),
    "telemetry_batch": (1, 64),
    "batch_ms": (100, 3600000),
    "sleep_ms": (0, 86400000),
    "awake_ms": (100, 60000),
}


def _err(code, **kw):
    r = {"ok": False, "err": code}
    for k in kw:
        r[k] = kw[k]
    return r


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def cmd_ping(node, a):
    return {"ok": True, "pong": a.get("n"), "up": node.uptime_s(), "boot": node.state.boot}


def cmd_relay(node, a):
    relays = node.relays
    name = a.get("name")
    op = a.get("op")
    if relays is None:
        return _err("no_relays")
    if not isinstance(name, str) or name not in node.relay_names():
        return _err("unknown_relay", name=name)
    if op not in ("on", "off", "toggle", "pulse"):
        return _err("bad_op", op=op)
    ms = a.get("ms", 1000)
    if op == "pulse" and (not _is_int(ms) or not 0 < ms <= 3600000):
        return _err("bad_args", ms=ms)
    return node.relay_op(name, op, ms, "command")


def cmd_config_set(node, a):
    key = a.get("key")
    value = a.get("value")
    if isinstance(key, str) and key.startswith("interval."):
        sensor = key[9:]
        if not _is_int(value) or not 100 <= value <= 86400000:
            return _err("bad_value", key=key)
        if not node.set_interval(sensor, value):
            return _err("unknown_sensor", key=key)
        return {"ok": True, "key": key, "value": value}
    lim = CONFIG_KEYS.get(key) if isinstance(key, str) else None
    if lim is None:
        return _err("unknown_key", key=key)
    if not _is_int(value) or not lim[0] <= value <= lim[1]:
        return _err("bad_value", key=key, min=lim[0], max=lim[1])
    node.set_option(key, value)
    return {"ok": True, "key": key, "value": value}


def cmd_feature(node, a):
    name = a.get("name")
    on = a.get("on")
    if not isinstance(name, str) or not isinstance(on, bool):
        return _err("bad_args")
    if not node.set_feature(name, on):
        return _err("unknown_feature", name=name)
    return {"ok": True, "name": name, "on": on}


def cmd_reboot(node, a):
    ms = a.get("ms", 300)
    if not _is_int(ms) or not 0 <= ms <= 60000:
        return _err("bad_args")
    node.schedule_reboot(ms)
    return {"ok": True, "in_ms": ms}


def cmd_time_sync(node, a):
    ts = a.get("ts")
    if not _is_int(ts) or ts < 0:
        return _err("bad_args")
    node.set_time(ts)
    return {"ok": True, "ts": ts}


def cmd_identify(node, a):
    s = a.get("s", 5)
    if not _is_int(s) or not 0 < s <= 600:
        return _err("bad_args")
    node.identify(s)
    return {"ok": True, "s": s}


def cmd_self_test(node, a):
    return node.self_test()


def cmd_status(node, a):
    return {"ok": True, "st": node.status()}


def cmd_rules_load(node, a):
    prog = a.get("prog")
    if not isinstance(prog, (bytes, bytearray)):
        return _err("bad_args")
    if node.rules is None:
        return _err("no_rules_engine")
    ota = getattr(node, "ota", None)  # once an owner key is installed, only signed programs (docs/ota.md)
    if ota is not None:
        bad = ota.check_rules(bytes(prog), a.get("m"), a.get("sig"))
        if bad is not None:
            return _err(bad[0], msg=bad[1])
    try:
        if ota is None:
            node.rules.load(bytes(prog))
        else:
            node.rules.load(bytes(prog), persist=False)  # verified and staged; stored with its signature
            ota.persist_rules(bytes(prog), a.get("m"), a.get("sig"))
    except Exception as e:
        return _err("rejected", msg=exc_text(e))
    return {"ok": True, "size": len(prog)}


def cmd_rules_info(node, a):
    rules = node.rules
    if rules is None or not hasattr(rules, "info"):
        return _err("no_rules_engine")
    i = rules.info()
    r = {"ok": True, "loaded": bool(i.get("loaded")), "pending": bool(i.get("pending")),
         "swaps": i.get("swaps", 0)}
    for k in ("rules", "size", "crc"):
        if k in i:
            r[k] = i[k]
    err = i.get("error")
    if err:
        r["error"] = str(err)[:96]  # the ACK is one ESP-NOW frame
    return r


HANDLERS = {
    "ping": cmd_ping,
    "relay": cmd_relay,
    "config_set": cmd_config_set,
    "feature": cmd_feature,
    "reboot": cmd_reboot,
    "time_sync": cmd_time_sync,
    "identify": cmd_identify,
    "self_test": cmd_self_test,
    "status": cmd_status,
    "rules_load": cmd_rules_load,
    "rules_info": cmd_rules_info,
}


def handle(node, obj):
    """Dispatch one command message {"op": str, "a": {...}}; always returns a result map."""
    if not isinstance(obj, dict):
        node.count("bad_cmd")
        return _err("bad_cmd")
    op = obj.get("op")
    a = obj.get("a")
    if a is None:
        a = {}
    fn = HANDLERS.get(op) if isinstance(op, str) else None
    if fn is None:
        node.count("unknown_cmd")
        return _err("unknown_op", op=op if isinstance(op, str) else None)
    if not isinstance(a, dict):
        node.count("bad_cmd")
        return _err("bad_args")
    node.count("cmds")
    try:
        return fn(node, a)
    except Exception as e:
        node.count("cmd_errors")
        node.log.error("command %s: %s" % (op, exc_text(e)))
        return _err("exception", msg=exc_text(e))
