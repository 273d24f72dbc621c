# The OTA state of a device, one fsio.Record at <store>/ota/state (outside the app slots):
#   keys      {key_id: public key hex}  the owner keys updates must be signed with (trust store)
#   retired   [key_id]                  keys rotated out: their signatures are refused for good
#   counters  {kind: n}                 anti-downgrade: a manifest needs counter > counters[kind]
#   versions  {kind: version}           installed version per kind (status, same-version refusal)
#   trial     None | {kind, slot|label, prev, counter, version}  an app/firmware on trial (boot confirm)
#   last_rollback None | {kind, version, reason}
# Trust and counters live in one record so a key rotation and its counter are stored in one step.
try:
    import json
except ImportError:  # pragma: no cover
    import ujson as json

try:
    from hashlib import sha256
except ImportError:  # pragma: no cover
    from uhashlib import sha256

from fieldlink.ota import fsio

OTA_DIR = "ota"
OWNER_KEYS = "owner_keys.json"  # in a bundle: public keys to trust on first boot (fieldlink build --owner-key)


def key_id(pub):
    """First 8 bytes of SHA-256 over the raw 32-byte public key, 16 hex digits (docs/ota.md)."""
    return fsio.hexs(sha256(bytes(pub)).digest()[:8])


def unhex(s):
    if not isinstance(s, str) or len(s) % 2:
        raise ValueError("bad hex")
    return bytes(int(s[i:i + 2], 16) for i in range(0, len(s), 2))


def default():
    return {"keys": {}, "retired": [], "counters": {}, "versions": {}, "trial": None, "last_rollback": None}


class State:
    def __init__(self, store):
        self.dir = store.rstrip("/") + "/" + OTA_DIR
        self.rec = fsio.Record(self.dir + "/state")
        self.d = None
        self.reload()

    def reload(self):
        d = self.rec.load(None)
        base = default()
        if isinstance(d, dict):
            for k in base:
                if k in d:
                    base[k] = d[k]
        self.d = base
        return base

    def save(self):
        fsio.mkdirs(self.dir)
        self.rec.save(self.d)

    # ---- trust
    def trusted(self):
        return bool(self.d["keys"])

    def public_key(self, kid):
        h = self.d["keys"].get(kid)
        return unhex(h) if h else None

    def install_keys(self, pubs):
        """Replace the trusted set by pubs (raw 32-byte keys); keys dropped are retired for good."""
        new = {}
        for p in pubs:
            new[key_id(p)] = fsio.hexs(p)
        for kid in self.d["keys"]:
            if kid not in new and kid not in self.d["retired"]:
                self.d["retired"].append(kid)
        self.d["keys"] = new

    def counter(self, kind):
        return int(self.d["counters"].get(kind, -1))

    def raise_counter(self, kind, counter, version):
        """Never lowers: counters only move up (a stale caller cannot undo a newer install)."""
        if counter > self.counter(kind):
            self.d["counters"][kind] = counter
            self.d["versions"][kind] = version


def parse_owner_keys(data):
    """Keys from an owner_keys.json / keys payload: {"fieldlink_keys": 1, "keys": ["<64 hex>", ...]}."""
    obj = json.loads(data)
    if not isinstance(obj, dict) or obj.get("fieldlink_keys") != 1 or not isinstance(obj.get("keys"), list):
        raise ValueError("not a fieldlink_keys document")
    out = []
    for k in obj["keys"]:
        if not isinstance(k, str) or len(k) != 64:
            raise ValueError("a key is not 64 hex digits")
        out.append(unhex(k.lower()))
    if not out:
        raise ValueError("no keys")
    return out


def bootstrap(store, slot):
    """First boot: no trust store yet and the running bundle carries owner_keys.json -> trust those keys.
    Never replaces an installed trust store (rotation goes through a signed `keys` update).
    Returns the installed key ids, or None."""
    st = State(store)
    if st.trusted() or st.d["retired"]:
        return None
    p = slot.rstrip("/") + "/" + OWNER_KEYS
    if not fsio.exists(p):
        return None
    st.install_keys(parse_owner_keys(fsio.read(p)))
    st.save()
    return sorted(st.d["keys"])
