# Boot side of an update (docs/ota.md "Boot and confirm"): on_boot() runs before the role starts, tells
# whether this boot is a trial, finishes a confirmation or a switch a power cut interrupted, and reports
# a rollback the loader made; run_trial() runs the self-test and confirms or rolls back. The counter of
# an app or firmware is stored only when it is confirmed, in the same record write that ends the trial,
# and counters only ever move up (fieldlink.ota.state).
from fieldlink.ota import bootsel, fsio
from fieldlink.ota.state import State


def _fl(root, name):
    return root.rstrip("/") + "/fl/" + name


def _running_label():
    import esp32
    return esp32.Partition(esp32.Partition.RUNNING).info()[4]


def _end_trial(st, t, reason=None):
    """Trial over: confirmed (reason None: counter stored) or rolled back (reason kept for status)."""
    if reason is None:
        st.raise_counter(t["kind"], t["counter"], t["version"])
    else:
        st.d["last_rollback"] = {"kind": t["kind"], "version": t["version"], "reason": reason}
    st.d["trial"] = None
    st.save()


def on_boot(root=".", store="fl/data"):
    """Returns None (no update pending), {"trial": t} (this boot runs an update on trial: self-test,
    then confirm() or rollback()), {"rolled_back": reason, ...} (report it) or {"reboot": True} (a switch
    that a power cut interrupted was completed: reset the board)."""
    st = State(store)
    t = st.d["trial"]
    marker = bootsel._read(_fl(root, "rollback"))
    if t is None:
        if marker is not None:
            fsio.remove(_fl(root, "rollback"))
        return None
    if t["kind"] == "app":
        trial = bootsel._read(_fl(root, "trial"))
        active = bootsel._read(_fl(root, "active"))
        if marker is not None:
            _end_trial(st, t, marker)
            fsio.remove(_fl(root, "rollback"))
            return {"rolled_back": marker, "kind": "app", "version": t["version"]}
        if active == t["slot"]:  # confirm() was cut after the switch
            fsio.remove(_fl(root, "trial"))
            _end_trial(st, t)
            return None
        if trial is None:
            if t.get("booted"):
                _end_trial(st, t, "unconfirmed")
                return {"rolled_back": "unconfirmed", "kind": "app", "version": t["version"]}
            fsio.atomic_write(_fl(root, "trial"), ("%s 0" % t["slot"]).encode())  # finish() was cut
            return {"reboot": True}
    else:  # firmware
        import esp32
        running = _running_label()
        if running != t["label"]:
            if t.get("booted"):
                _end_trial(st, t, "bootloader")
                return {"rolled_back": "bootloader", "kind": "firmware", "version": t["version"]}
            fsio.hook("set_boot " + t["label"])  # finish() was cut before set_boot()
            esp32.Partition(t["label"]).set_boot()
            return {"reboot": True}
        p = esp32.Partition(running)
        state = p._ota_state() if hasattr(p, "_ota_state") else None
        if state == "valid":  # confirm() was cut after marking the app valid
            _end_trial(st, t)
            return None
    if not t.get("booted"):
        t["booted"] = True
        st.save()
    return {"trial": t}


def confirm(root=".", store="fl/data"):
    """The self-test passed: make the update permanent, then store its counter."""
    st = State(store)
    t = st.d["trial"]
    if t is None:
        return False
    if t["kind"] == "app":
        fsio.atomic_write(_fl(root, "active"), t["slot"].encode())
        fsio.remove(_fl(root, "trial"))
    else:
        import esp32
        fsio.hook("mark_app_valid")
        esp32.Partition.mark_app_valid_cancel_rollback()
    _end_trial(st, t)
    return True


def rollback(root=".", store="fl/data", reason="self_test"):
    """The self-test failed: back to the previous slot at the next boot (the caller resets)."""
    st = State(store)
    t = st.d["trial"]
    if t is None:
        return False
    if t["kind"] == "app":
        bootsel.roll_back(root, reason)
        _end_trial(st, t, reason)
        fsio.remove(_fl(root, "rollback"))
    else:
        _end_trial(st, t, reason)  # not marked valid: the bootloader boots the previous partition
    return True


def run_trial(root=".", store="fl/data", self_test=None):
    """on_boot() and, on a trial, the self-test (callable -> (ok, reason)): confirm or roll back.
    Returns {"state": "none"|"confirmed"|"rolled_back"|"reboot", "reason", "version", "kind"}."""
    r = on_boot(root, store)
    if r is None:
        return {"state": "none"}
    if r.get("reboot"):
        return {"state": "reboot"}
    if "rolled_back" in r:
        return {"state": "rolled_back", "reason": r["rolled_back"], "kind": r["kind"], "version": r["version"]}
    t = r["trial"]
    ok, reason = True, None
    if self_test is not None:
        try:
            ok, reason = self_test()
        except Exception as e:
            ok, reason = False, "self_test raised %s" % (e,)
    if ok:
        confirm(root, store)
        return {"state": "confirmed", "kind": t["kind"], "version": t["version"]}
    rollback(root, store, reason or "self_test")
    return {"state": "rolled_back", "reason": reason or "self_test", "kind": t["kind"], "version": t["version"],
            "reboot": True}
