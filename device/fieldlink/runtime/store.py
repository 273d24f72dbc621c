# The one place that writes persisted files (docs/roles.md "Store"): pairing, peers, counters, boot id,
# relay restore state, board state, the last good board config. (The rules program is written by
# rules/engine.py the same way: temp file, then rename.)
#
#   write(path, data)        data (bytes or str) to path.tmp, flushed and closed, then renamed over path:
#                            a power cut at any step leaves the old file or the new one, never a mix
#   read(path, what)         bytes, or None for a missing file (normal on first boot, silent) or an
#                            unreadable/empty one (warning logged)
#   write_json / read_json   the same for JSON; a truncated or corrupt file -> None + warning
#   join, exists, dirname, makedirs   path helpers (no os.path on MicroPython)
# Readers never raise for bad content: the caller falls back to its default and says so.
import json
import os

from fieldlink.runtime.platform import say

TMP = ".tmp"


def warn(msg):
    say("store: warning: %s" % msg)


def join(d, name):
    if not d or d == ".":
        return name
    return d + name if d.endswith("/") else d + "/" + name


def dirname(path):
    i = path.rfind("/")
    if i < 0:
        return ""
    return path[:i] if i > 0 else "/"


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def makedirs(path):
    cur = ""
    for p in path.split("/"):
        if not p:
            cur = "/" if not cur else cur
            continue
        cur = (cur.rstrip("/") + "/" + p) if cur else p
        if not exists(cur):
            try:
                os.mkdir(cur)
            except OSError:
                pass


def write(path, data):
    """Atomically replace path with data: temp file, write, flush, close, rename. Raises OSError."""
    tmp = path + TMP
    f = open(tmp, "wb" if isinstance(data, (bytes, bytearray, memoryview)) else "w")
    try:
        f.write(data)
        f.flush()
    finally:
        f.close()
    os.rename(tmp, path)


def read(path, what="file", binary=True):
    """The file's content, or None: missing (silent), unreadable or empty (warning)."""
    try:
        f = open(path, "rb" if binary else "r")
    except OSError:
        return None
    try:
        data = f.read()
    except OSError as e:
        warn("%s %s unreadable (%s); using the default" % (what, path, e))
        return None
    finally:
        f.close()
    if not data:
        warn("%s %s is empty; using the default" % (what, path))
        return None
    return data


def write_json(path, obj):
    write(path, json.dumps(obj))


def read_json(path, what="file"):
    """Parsed JSON, or None (missing: silent; empty, truncated or corrupt: warning)."""
    text = read(path, what, False)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        warn("%s %s is corrupt or truncated; using the default" % (what, path))
        return None


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
