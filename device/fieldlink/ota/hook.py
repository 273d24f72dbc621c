# The running board's side of OTA (docs/ota.md "Boot and confirm"), used by fieldlink.main and the node:
#   OtaHook(store, slot, board).boot()   first boot: trust the bundle's owner_keys.json; then on_boot():
#                                        trial? finish an interrupted switch (-> reset)? report a rollback
#   await hook.supervise(role, reset)    on a trial: self-test until it passes (confirm) or the timeout
#                                        (roll back, reset); emits ota_confirmed / ota_rollback events
#   hook.crashed(reason)                 the role died during a trial: roll back (caller resets)
#   hook.status()                        the "ota" field of the node's status
#   hook.app_version()                   the installed app version (the node's heartbeat "app")
# Signed rules (node only) are in fieldlink.ota.rules_sig, so a gateway bundle carries no rules code.
from fieldlink.ota import boot, bootsel, state
from fieldlink.ota.updater import Updater
from fieldlink.runtime import store as st
from fieldlink.runtime.clock import asleep_ms, ticks_diff, ticks_ms
from fieldlink.runtime.platform import say

TRIAL_TIMEOUT_MS = 60000  # the self-test must pass within this time after boot (link to the gateway)
SETTLE_MS = 5000  # the role must have run this long before a passing self-test counts


def root_of(slot):
    """The board root (where fl/ lives) of an app slot directory .../fl/a, or None."""
    if not slot:
        return None
    s = slot.rstrip("/")
    if s in ("fl/a", "fl/b"):
        return "."
    if s.endswith("/fl/a") or s.endswith("/fl/b"):
        return s[:-5] or "/"
    return None


def bundle_version(slot):
    """The "version" of an app slot's bundle manifest.json (docs/deploy.md), or None."""
    m = st.read_json(st.join(slot, "manifest.json"), "bundle manifest") if slot else None
    v = m.get("version") if isinstance(m, dict) else None
    return v if isinstance(v, str) else None


class OtaHook:
    def __init__(self, store, slot, board, timeout_ms=TRIAL_TIMEOUT_MS, settle_ms=SETTLE_MS, app=None):
        self.store = store
        self.slot = slot
        self.app = app  # the app directory when no slot runs (a board run from source or copied by hand)
        self.root = root_of(slot)
        self.board = board
        self.timeout_ms = timeout_ms
        self.settle_ms = settle_ms
        self.result = None
        self.reported = None
        self._app = False  # app_version() cache (False: not read yet)

    def boot(self):
        keys_from = self.slot or (None if self.app is None else (self.app or "."))
        if keys_from:
            kids = state.bootstrap(self.store, keys_from)
            if kids:
                say("ota: trusting owner key(s) %s from the bundle" % ", ".join(kids))
        if self.root is None:
            return None
        self.result = boot.on_boot(self.root, self.store)
        r = self.result
        if r and "rolled_back" in r:
            say("ota: %s %s rolled back (%s)" % (r["kind"], r["version"], r["rolled_back"]))
        elif r and "trial" in r:
            say("ota: %s %s on trial: self-test within %d s" % (r["trial"]["kind"], r["trial"]["version"],
                                                                  self.timeout_ms // 1000))
        return r

    def on_trial(self):
        return bool(self.result and "trial" in self.result)

    def pending(self):
        """supervise() has work: a trial to confirm, or a rollback to report as an event."""
        return bool(self.result and ("trial" in self.result or "rolled_back" in self.result))

    def updater(self, **kw):
        """The Updater for this board and store (a node passes verify_rules= and on_rules=)."""
        return Updater(self.store, self.root or ".", board=self.board, **kw)

    def status(self):
        d = state.State(self.store).d
        t = d["trial"]
        return {"board": self.board, "counters": d["counters"], "versions": d["versions"], "keys": sorted(d["keys"]),
                "trial": ({"kind": t["kind"], "version": t["version"]} if t else None),
                "last_rollback": d["last_rollback"]}

    def app_version(self):
        """The installed app version, or None when no app slot runs (a board run from source): the
        version of the last confirmed app update, else the bundle manifest of the slot the board runs
        (during an app trial: the slot it came from, so the new version shows only once confirmed)."""
        if self._app is False:
            self._app = None
            if self.root is not None:
                d = state.State(self.store).d
                v = d["versions"].get("app")
                if v is None:
                    t = d["trial"]
                    slot = self.slot
                    if t and t.get("kind") == "app" and t.get("prev"):
                        slot = st.join(self.root, "fl/" + t["prev"])
                    v = bundle_version(slot)
                self._app = v if isinstance(v, str) else None
        return self._app

    # ---- self-test and confirmation
    def self_test(self, obj):
        """(ok, reason): the role's own self-test (sensors answer), the link to the gateway, the rules."""
        res = obj.self_test() if hasattr(obj, "self_test") else {"ok": True}
        for name, good in (res.get("sensors") or {}).items():
            if not good:
                return False, "sensor %s" % name
        link = getattr(obj, "link", None)
        if link is not None and (not getattr(link, "paired", True) or not res.get("link", True)):
            return False, "link"
        rules = getattr(obj, "rules", None)
        if rules is not None and (getattr(rules, "last_error", None) or
                                  (getattr(rules, "prog", None) is None and getattr(rules, "pending", None) is None
                                   and self._rules_expected())):
            return False, "rules"
        if not res.get("ok", True):
            return False, "self_test"
        return True, None

    def _rules_expected(self):
        return self.slot is not None and bool(_bin_files(st.join(self.slot, "rules")))

    def _emit(self, obj, ev, sev, data):
        if hasattr(obj, "emit"):
            try:
                obj.emit(ev, sev, data)
            except Exception:
                pass

    async def supervise(self, obj, reset=None, poll_ms=500):
        r = self.result
        if r and "rolled_back" in r:
            self._emit(obj, "ota_rollback", "warning", {"kind": r["kind"], "version": r["version"],
                                                        "reason": r["rolled_back"]})
            self.result = None
        if not self.on_trial():
            return None
        t = r["trial"]
        t0 = ticks_ms()
        reason = None
        await asleep_ms(self.settle_ms)  # a role that dies right after starting is never confirmed
        while True:
            try:
                ok, reason = self.self_test(obj)
            except Exception as e:
                ok, reason = False, "self_test raised %s" % (e,)
            if ok:
                boot.confirm(self.root, self.store)
                self.result = None
                self._app = False
                say("ota: %s %s confirmed" % (t["kind"], t["version"]))
                self._emit(obj, "ota_confirmed", "info", {"kind": t["kind"], "version": t["version"]})
                return True
            if ticks_diff(ticks_ms(), t0) >= self.timeout_ms:
                break
            await asleep_ms(poll_ms)
        self.roll_back(obj, reason or "self_test")
        if reset is not None:
            await asleep_ms(1000)  # let the event leave
            reset()
        return False

    def roll_back(self, obj, reason):
        t = self.result["trial"]
        boot.rollback(self.root, self.store, reason)
        self.result = None
        self._app = False
        say("ota: %s %s failed its self-test (%s): rolling back" % (t["kind"], t["version"], reason))
        self._emit(obj, "ota_rollback", "warning", {"kind": t["kind"], "version": t["version"], "reason": reason})

    def crashed(self, reason="crash"):
        """The role died while on trial: roll back now (the caller resets the board)."""
        if not self.on_trial():
            return False
        t = self.result["trial"]
        if t["kind"] == "app":
            bootsel.crashed(self.root)
        else:
            boot.rollback(self.root, self.store, reason)
        self.result = None
        self._app = False
        return True


def _bin_files(d):
    try:
        import os
        return [n for n in os.listdir(d) if n.endswith(".bin")]
    except OSError:
        return []
