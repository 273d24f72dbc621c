# Signed manifest checks made before a device accepts any payload byte (docs/ota.md "Device
# verification order"), and the .mpy compatibility rule. Shared by the updater and the signed-rules gate.
import sys

try:
    import json
except ImportError:  # pragma: no cover
    import ujson as json

from fieldlink.ota import ed25519

KINDS = ("app", "firmware", "rules", "keys")
FORMAT = 1
MAX_SMALL = 65536  # rules / keys payloads
RESERVED = ("manifest.json", "ota.json", "ota.sig")
FIELDS = (("fieldlink_ota", int), ("kind", str), ("board", str), ("version", str), ("counter", int),
          ("size", int), ("sha256", str), ("key_id", str), ("payload", str), ("stream_size", int))


class OtaError(Exception):
    """An update refused or failed; .reason is a short token (docs/ota.md)."""

    def __init__(self, reason, msg=None):
        super().__init__("%s: %s" % (reason, msg) if msg else reason)
        self.reason = reason


def runtime_mpy():
    """sys.implementation._mpy (version | sub-version << 8 | arch << 10), None when unknown (CPython)."""
    return getattr(sys.implementation, "_mpy", None)


def mpy_loadable(ver, sub, arch, runtime):
    """Can a runtime with sys.implementation._mpy == runtime load a .mpy with this header? Bytecode needs
    the same version; native code also the same arch and sub-version (py/persistentcode.c)."""
    if runtime is None:
        return True
    if ver != runtime & 0xFF:
        return False
    if arch and (arch != runtime >> 10 or sub != (runtime >> 8) & 3):
        return False
    return True


def safe_path(p):
    if not isinstance(p, str) or not p or p.startswith("/") or "\\" in p or p in RESERVED:
        return False
    for part in p.split("/"):
        if part in ("", ".", ".."):
            return False
    return True



def check(st, mbytes, sig, board, kinds, mpy):
    """Everything that can be checked before the payload: signature, key, fields, board, kind, counter,
    version, sizes, .mpy version (docs/ota.md "Device verification order"). st: fieldlink.ota.state.State;
    mpy: the runtime's sys.implementation._mpy (None: not checked). Returns the manifest dict or raises
    OtaError."""
    if len(sig) != 64:
        raise OtaError("bad_signature", "signature must be 64 bytes")
    if not st.trusted():
        raise OtaError("no_trust", "no owner key installed")
    try:
        m = json.loads(mbytes)
    except (ValueError, TypeError):
        m = None
    kid = m.get("key_id") if isinstance(m, dict) else None
    if not isinstance(kid, str):
        raise OtaError("bad_manifest", "no key_id")
    if kid in st.d["retired"]:
        raise OtaError("retired_key", "key %s was retired" % kid)
    pub = st.public_key(kid)
    if pub is None:
        raise OtaError("unknown_key", "key %s is not trusted" % kid)
    if not ed25519.verify(pub, bytes(mbytes), bytes(sig)):
        raise OtaError("bad_signature", "signature does not match the manifest")
    for name, typ in FIELDS:
        v = m.get(name)
        if not isinstance(v, typ) or isinstance(v, bool):
            raise OtaError("bad_manifest", "field %s missing or not %s" % (name, typ.__name__))
    if m["fieldlink_ota"] != FORMAT:
        raise OtaError("bad_manifest", "format %d" % m["fieldlink_ota"])
    kind = m["kind"]
    if kind not in KINDS or kind not in kinds:
        raise OtaError("wrong_kind", "kind %s not accepted here" % kind)
    if board is not None and m["board"] != board:
        raise OtaError("wrong_board", "for board %s, this is %s" % (m["board"], board))
    c = m["counter"]
    have = st.counter(kind)
    if c == have:
        raise OtaError("replay", "counter %d is already installed" % c)
    if c < have:
        raise OtaError("downgrade", "counter %d is below the installed %d" % (c, have))
    if st.d["versions"].get(kind) == m["version"]:
        raise OtaError("replay", "version %s is already installed" % m["version"])
    size, total = m["size"], m["stream_size"]
    if size < 0 or total < size or len(m["sha256"]) != 64:
        raise OtaError("bad_manifest", "sizes")
    if kind == "app":
        mp = m.get("mpy")
        if not isinstance(mp, list) or len(mp) != 3:
            raise OtaError("bad_manifest", "an app manifest needs mpy [version, sub, arch]")
        if not mpy_loadable(mp[0], mp[1], mp[2], mpy):
            raise OtaError("mpy_version", "bundle .mpy %d.%d arch %d, runtime loads %s"
                           % (mp[0], mp[1], mp[2], mpy))
    elif total != size:
        raise OtaError("bad_manifest", "stream_size differs from size")
    if kind in ("rules", "keys") and size > MAX_SMALL:
        raise OtaError("oversize", "%s payload of %d bytes" % (kind, size))
    return m
