# Signed rules programs (docs/ota.md "Rules"): once an owner key is installed, a rules program is
# accepted only with a signed manifest of kind "rules" for this board whose size and sha256 match it.
# Used by rules_load (the envelope travels with the command) and when the node restores the program
# persisted in the store (envelope in <store>/rules.bin.ota, written by the rules update).
try:
    import json
except ImportError:  # pragma: no cover
    import ujson as json

try:
    from hashlib import sha256
except ImportError:  # pragma: no cover
    from uhashlib import sha256

from fieldlink.ota import ed25519, fsio
from fieldlink.ota.state import State, unhex
from fieldlink.ota.updater import RULES_SIG, OtaError


def envelope(store):
    """The stored envelope {"m": manifest text, "sig": hex} of the persisted program, or None."""
    try:
        d = json.loads(fsio.read(store.rstrip("/") + "/" + RULES_SIG))
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def check(store, prog, board=None, env=None):
    """None if prog may run; raises OtaError otherwise. Without an owner key anything verified by the
    rules verifier may run (the pre-OTA behaviour)."""
    st = State(store)
    if not st.trusted():
        return None
    if not isinstance(env, dict) or not isinstance(env.get("m"), str) or not isinstance(env.get("sig"), str):
        raise OtaError("unsigned", "an owner key is installed: rules programs must be signed")
    mb = env["m"].encode()
    try:
        sig = unhex(env["sig"])
        m = json.loads(mb)
    except ValueError:
        raise OtaError("bad_manifest", "envelope")
    kid = m.get("key_id") if isinstance(m, dict) else None
    if kid in st.d["retired"]:
        raise OtaError("retired_key", "key %s was retired" % kid)
    pub = st.public_key(kid) if isinstance(kid, str) else None
    if pub is None:
        raise OtaError("unknown_key", "key %s is not trusted" % (kid,))
    if len(sig) != 64 or not ed25519.verify(pub, mb, sig):
        raise OtaError("bad_signature", "signature does not match the manifest")
    if m.get("kind") != "rules":
        raise OtaError("wrong_kind", "manifest is for %s" % (m.get("kind"),))
    if board is not None and m.get("board") != board:
        raise OtaError("wrong_board", "for board %s" % (m.get("board"),))
    if m.get("size") != len(prog) or m.get("sha256") != fsio.hexs(sha256(bytes(prog)).digest()):
        raise OtaError("bad_hash", "program does not match the signed sha256")
    return None
