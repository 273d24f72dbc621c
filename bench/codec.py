# Wire codec baseline: bytes/s of the pure-Python codecs under CPython AND MicroPython, side by side.
#
#   python bench/codec.py [--quick] [--json]
#
# The same measurement code (run_all below) runs in this CPython process and in a `micropython`
# child process (MICROPYPATH=device, started as `micropython bench/codec.py --worker`), which prints
# its numbers as one JSON line. The native C issue compares against this table.
# This file must stay MicroPython-compatible down to the `if __name__` block (hence %-formatting,
# as in device/**, which ruff exempts from UP the same way).
# ruff: noqa: UP031
import sys

from _bench import IS_MPY  # noqa: F401
from _bench import now as _now
from _bench import secs as _secs


def _rate(fn, nbytes, min_time):
    """Run fn() repeatedly for at least min_time seconds; return bytes per second."""
    fn()  # warm up (and fail early)
    reps = 1
    while True:
        t0 = _now()
        for _ in range(reps):
            fn()
        dt = _secs(t0, _now())
        if dt >= min_time:
            return nbytes * reps / dt
        reps = reps * 2 if dt < min_time / 8 else int(reps * min_time / max(dt, 1e-6)) + 1


def _test_data(n):
    # deterministic bytes with ~1/16 zeros, like msgpack payloads with small ints
    out = bytearray(n)
    x = 1
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        v = (x >> 16) & 0xFF
        out[i] = 0 if v < 16 else v
    return bytes(out)


TELEMETRY = {
    "id": "node-07", "seq": 48213, "ts": 1720000000, "kind": "telemetry",
    "vals": {"temp": 21.5, "hum": 48.25, "bat": 3.71, "lux": 1200},
    "rssi": -67, "relays": [True, False, False, True], "err": None,
}


def run_all(quick=False):
    from fieldlink.codec import cobs, mpack
    from fieldlink.codec.crc import crc16
    from fieldlink.codec.serialframe import FrameDecoder, encode_frame

    t = 0.08 if quick else 0.4
    data = _test_data(1024)
    enc = cobs.encode(data)
    payload = data[:256]
    stream = b"".join([encode_frame(payload)] * 16)
    msg = mpack.packb(TELEMETRY)
    dec = FrameDecoder()

    def frame_decode():
        if len(dec.feed(stream)) != 16:
            raise RuntimeError("frame decode failed")

    results = [
        ("crc16 (1 KiB)", _rate(lambda: crc16(data), len(data), t)),
        ("cobs encode (1 KiB)", _rate(lambda: cobs.encode(data), len(data), t)),
        ("cobs decode (1 KiB)", _rate(lambda: cobs.decode(enc), len(enc), t)),
        ("frame encode (256 B)", _rate(lambda: encode_frame(payload), len(payload), t)),
        ("frame decode, feed 16x256 B", _rate(frame_decode, len(stream), t)),
        ("msgpack pack telemetry (%d B)" % len(msg), _rate(lambda: mpack.packb(TELEMETRY), len(msg), t)),
        ("msgpack unpack telemetry (%d B)" % len(msg), _rate(lambda: mpack.unpackb(msg), len(msg), t)),
    ]
    return results


def _worker(argv):
    import json
    res = run_all("--quick" in argv)
    print("@@BENCH " + json.dumps([[name, rate] for name, rate in res]))


def _fmt(rate):
    if rate is None:
        return "n/a"
    for unit, div in (("MB/s", 1e6), ("kB/s", 1e3)):
        if rate >= div:
            return "%.2f %s" % (rate / div, unit)
    return "%.0f B/s" % rate


def _run_micropython(quick):
    import json
    import os

    from _bench import run_micropython

    proc = run_micropython(os.path.abspath(__file__), ["--worker"] + (["--quick"] if quick else []))
    for line in proc.stdout.splitlines():
        if line.startswith("@@BENCH "):
            return {name: rate for name, rate in json.loads(line[8:])}
    raise SystemExit("micropython benchmark failed (rc %d):\n%s%s" % (proc.returncode, proc.stdout, proc.stderr))


def main(argv):
    import argparse
    import json
    import os
    import platform

    ap = argparse.ArgumentParser(description=__doc__ or "wire codec benchmark")
    ap.add_argument("--quick", action="store_true", help="short measurements (smoke run)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = ap.parse_args(argv)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(root, "device"))

    cpy = run_all(args.quick)
    mpy = _run_micropython(args.quick)
    rows = [(name, rate, mpy.get(name)) for name, rate in cpy]
    if args.json:
        print(json.dumps([{"name": n, "cpython_Bps": c, "micropython_Bps": m} for n, c, m in rows], indent=1))
        return 0
    print("fieldlink wire codecs, pure Python: CPython %s vs MicroPython unix port (same code, same run)"
          % platform.python_version())
    w = max(len(n) for n, _, _ in rows)
    print("%-*s  %14s  %14s  %9s" % (w, "codec", "CPython", "MicroPython", "CPy/MPy"))
    print("-" * (w + 43))
    for name, c, m in rows:
        ratio = "%.2fx" % (c / m) if m else "n/a"
        print("%-*s  %14s  %14s  %9s" % (w, name, _fmt(c), _fmt(m), ratio))
    return 0


if __name__ == "__main__":
    if IS_MPY:
        _worker(sys.argv[1:])
    else:
        sys.exit(main(sys.argv[1:]))
