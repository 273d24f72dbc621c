# Test kit for the OTA device tests (CPython and MicroPython): a test-only Ed25519 signer (RFC 8032
# 5.1.6 on top of fieldlink.ota.ed25519's point arithmetic; test_ota_updater checks under CPython that
# it produces the same bytes as `cryptography`), signed manifests, fake bundles, a board root.
import os

try:
    import json
except ImportError:  # pragma: no cover
    import ujson as json

from hashlib import sha256

from devtest import tmpdir
from fieldlink.ota import ed25519, fsio
from fieldlink.ota.sha512 import sha512
from fieldlink.ota.state import key_id

RUNTIME_MPY = 6 | (3 << 8) | (2 << 10)  # .mpy 6.3, x64 (what the bundle .mpy headers below say)
BOARD = "sim-node"


def _scalar_base(s):
    X, Y, Z, _ = ed25519.double_scalar(s, 0, ed25519.BX, ed25519.BY)
    return ed25519.encode_point(X, Y, Z)


class Key:
    def __init__(self, seed):
        self.seed = bytes(seed)
        h = sha512(self.seed).digest()
        a = bytearray(h[:32])
        a[0] &= 248
        a[31] &= 127
        a[31] |= 64
        self.a = int.from_bytes(bytes(a), "little")
        self.prefix = h[32:]
        self.pub = _scalar_base(self.a)
        self.kid = key_id(self.pub)

    def sign(self, msg):
        r = int.from_bytes(sha512(self.prefix + msg).digest(), "little") % ed25519.L
        R = _scalar_base(r)
        k = int.from_bytes(sha512(R + self.pub + msg).digest(), "little") % ed25519.L
        S = (r + k * self.a) % ed25519.L
        return R + S.to_bytes(32, "little")


def hx(b):
    return fsio.hexs(b)


def manifest(key, kind, payload, counter, version="1.0", board=BOARD, stream_size=None, mpy=None, **extra):
    m = {"fieldlink_ota": 1, "kind": kind, "board": board, "version": version, "counter": counter,
         "size": len(payload), "sha256": hx(sha256(payload).digest()), "key_id": key.kid,
         "payload": "manifest.json" if kind == "app" else "payload.bin",
         "stream_size": len(payload) if stream_size is None else stream_size}
    if mpy is not None:
        m["mpy"] = mpy
    for k in extra:
        m[k] = extra[k]
    mb = json.dumps(m).encode()
    return mb, key.sign(mb)


def mpy_file(body, ver=6, flags=0):
    return bytes([0x4D, ver, flags, 31]) + body


def bundle(files, board=BOARD, version="1.0"):
    """(bundle manifest bytes, stream bytes) for {path: bytes} (listed in sorted order)."""
    names = sorted(files)
    bm = {"format": "fieldlink-bundle/1", "board": board, "version": version,
          "files": [{"path": n, "size": len(files[n]), "sha256": hx(sha256(files[n]).digest())} for n in names]}
    mb = json.dumps(bm).encode()
    stream = mb + b"".join(files[n] for n in names)
    return mb, stream


def app_update(key, files, counter, version="1.0", board=BOARD, mpy=(6, 0, 0)):
    """(signed manifest, signature, stream) of an app bundle update."""
    mb, stream = bundle(files, board, version)
    m, sig = manifest(key, "app", mb, counter, version, board, stream_size=len(stream), mpy=list(mpy))
    return m, sig, stream


def app_files(tag):
    return {"main.mpy": mpy_file(b"main " + tag), "fieldlink/node.mpy": mpy_file(b"node " + tag * 40),
            "board.json": b'{"name": "sim-node"}', "rules/empty.txt": b""}


def board_root(tag, keys=(), active="a", files=None):
    """A board root with fl/active, slot `active` filled with files (or a v0 app), and a trust store."""
    root = tmpdir(tag)
    fsio.mkdirs(root + "/fl/" + active)
    with open(root + "/fl/active", "w") as f:
        f.write(active)
    for name, data in (files or app_files(b"v0")).items():
        p = root + "/fl/" + active + "/" + name
        d = p[:p.rfind("/")]
        fsio.mkdirs(d)
        with open(p, "wb") as f:
            f.write(data)
    store = root + "/fl/data"
    fsio.mkdirs(store)
    if keys:
        from fieldlink.ota.state import State
        st = State(store)
        st.install_keys([k.pub for k in keys])
        st.save()
    return root, store


def send(session, stream, chunk=100, start=None):
    off = session.offset if start is None else start
    while off < len(stream):
        off = session.write(off, stream[off:off + chunk])
    return off


def slot_files(root, slot):
    out = {}

    def walk(d, pre):
        for n in os.listdir(d):
            p = d + "/" + n
            if os.stat(p)[0] & 0x4000:
                walk(p, pre + n + "/")
            else:
                with open(p, "rb") as f:
                    out[pre + n] = f.read()
    walk(root + "/fl/" + slot, "")
    return out


def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None
