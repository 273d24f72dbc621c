# File-system steps of an update, each one of: atomic replace (temp + flush + rename), append, remove,
# mkdir. Every mutating step calls `hook(name)` first: the power-cut tests set it to stop the process
# at exactly that step (tests/host/test_ota_powercut.py). `Record` keeps a small JSON state in two
# alternating copies, each with its own hash, so a cut while writing one leaves the other (older,
# never newer) copy readable: a counter stored in it can never go back to a lower value.
import os

from fieldlink.runtime import store as _store

try:
    import json
except ImportError:  # pragma: no cover
    import ujson as json

try:
    from hashlib import sha256 as _sha256
except ImportError:  # pragma: no cover
    from uhashlib import sha256 as _sha256


def _nohook(name):
    pass


hook = _nohook  # replaced by tests: called before every mutating file-system step


def set_hook(fn):
    global hook
    hook = fn or _nohook


def hexs(b):
    return "".join("%02x" % x for x in b)


exists = _store.exists


def is_dir(path):
    try:
        return os.stat(path)[0] & 0x4000 != 0
    except OSError:
        return False


def size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


def mkdirs(path):
    cur = ""
    for part in path.split("/"):
        if not part:
            cur = "/" if not cur else cur
            continue
        cur = (cur.rstrip("/") + "/" + part) if cur else part
        if not exists(cur):
            hook("mkdir " + cur)
            os.mkdir(cur)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def atomic_write(path, data):
    """The store's temp + flush + rename write (fieldlink.runtime.store.write)."""
    hook("write " + path)
    _store.write(path, bytes(data))


def append(path, data):
    hook("append " + path)
    with open(path, "ab") as f:
        f.write(data)
        f.flush()


def remove(path):
    if exists(path):
        hook("remove " + path)
        os.remove(path)


def rmtree(path):
    """Remove path and everything below it (files first, then the directory)."""
    if is_dir(path):
        for name in os.listdir(path):
            rmtree(path + "/" + name)
        hook("rmdir " + path)
        os.rmdir(path)
    elif exists(path):
        remove(path)


def clear_dir(path):
    """Empty the directory path (create it if missing)."""
    if is_dir(path):
        for name in os.listdir(path):
            rmtree(path + "/" + name)
    else:
        mkdirs(path)


def sha256_file(path, h=None):
    h = h or _sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1024)
            if not b:
                break
            h.update(b)
    return h


class Record:
    """A JSON dict kept in two copies path.0 / path.1: `SEQ HASH16\\n` + JSON; load() returns the valid
    copy with the highest SEQ, save() overwrites the other copy."""

    def __init__(self, path):
        self.path = path
        self.seq = 0

    def _read(self, i):
        try:
            raw = read("%s.%d" % (self.path, i))
            nl = raw.index(b"\n")
            head = raw[:nl].split()
            body = raw[nl + 1:]
            if len(head) != 2 or hexs(_sha256(body).digest()[:8]) != head[1].decode():
                return None
            return int(head[0]), json.loads(body)
        except (OSError, ValueError, IndexError):
            return None

    def load(self, default=None):
        best = None
        for i in (0, 1):
            r = self._read(i)
            if r is not None and isinstance(r[1], dict) and (best is None or r[0] > best[0]):
                best = r
        if best is None:
            self.seq = 0
            return default
        self.seq = best[0]
        return best[1]

    def save(self, d):
        seq = self.seq + 1
        body = json.dumps(d).encode()
        data = ("%d %s\n" % (seq, hexs(_sha256(body).digest()[:8]))).encode() + body
        atomic_write("%s.%d" % (self.path, seq & 1), data)
        self.seq = seq
