"""OTA benchmarks: Ed25519 verify time (device verifier, CPython and MicroPython side by side).

    python bench/ota.py [--n N] [--json]

Rows (one table; `--json` prints one JSON object instead):
  verify    fieldlink.ota.ed25519.verify of a signed manifest (~300 bytes), best and median ms per verify, first call
            (builds the base-point table) and steady state; the MicroPython unix port has no hashlib
            SHA-512 either, so its row includes the pure-Python SHA-512, as on an ESP32.
Keys: ed25519_verify_ms (MicroPython unix port, best of N: the least disturbed by other load),
ed25519_verify_median_ms, ed25519_verify_ms_cpython (best), ed25519_verify_first_ms,
ed25519_c6_estimate_ms (x60 of the best unix time, the high end of docs/ota.md's x30..x60).
Transfer rows (bench/ota_transfer.py): efficiency (payload / air bytes at 0 % and 20 % loss, from counted
bytes) and KB/s on the virtual air. Keys: efficiency, efficiency_loss20, resent_per_lost_loss20,
kbps_virtual_air[_loss20][_cpython].
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "device"), str(ROOT / "host")]

from _bench import run_micropython  # noqa: E402

C6_FACTOR = (30, 60)  # 160 MHz RISC-V C6 vs this machine's unix port (docs/ota.md "Verify time")

VERIFY_LOOP = """
import sys, time, json, binascii
from fieldlink.ota import ed25519
def now():
    return time.ticks_us() if hasattr(time, "ticks_us") else time.perf_counter_ns() // 1000
def diff(a, b):
    return time.ticks_diff(b, a) if hasattr(time, "ticks_diff") else b - a
with open(sys.argv[1]) as f:  # long argv crashes the unix port, so the inputs come in a file
    pub, msg, sig, n = json.load(f)
pub, msg, sig = [binascii.unhexlify(x) for x in (pub, msg, sig)]
t0 = now()
ok = ed25519.verify(pub, msg, sig)
t1 = now()
ts = []
for _ in range(n):
    a = now()
    ok = ok and ed25519.verify(pub, msg, sig)
    ts.append(diff(a, now()) / 1000)
ts.sort()
print(json.dumps({"ok": ok, "first_ms": diff(t0, t1) / 1000, "ms": ts[len(ts) // 2], "min_ms": ts[0]}))
"""


def _signed_manifest() -> tuple[bytes, bytes, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    msg = (b'{"board":"esp32-c6-devkitc-1","counter":12,"fieldlink_ota":1,"key_id":"b7b8f6f1dfa428e9",'
           b'"kind":"app","mpy":[6,3,0],"payload":"manifest.json","sha256":"' + b"9f" * 32 +
           b'","size":1525,"stream_size":180224,"version":"0.1.0"}')
    return pub, msg, key.sign(msg)


def verify_rows(n: int) -> tuple[dict[str, float], list[tuple[str, str, str, str, str]]]:
    import subprocess
    import tempfile

    pub, msg, sig = _signed_manifest()
    with tempfile.TemporaryDirectory() as d:
        script = Path(d) / "verify_loop.py"
        script.write_text(VERIFY_LOOP)
        inputs = Path(d) / "inputs.json"
        inputs.write_text(json.dumps([pub.hex(), msg.hex(), sig.hex(), n]))
        args = [str(inputs)]
        cp = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=600,
                            env={"PYTHONPATH": str(ROOT / "device")})
        if cp.returncode != 0:
            raise SystemExit(cp.stderr)
        cpy = json.loads(cp.stdout)
        mp = run_micropython(str(script), args)
        if mp.returncode != 0:
            raise SystemExit(mp.stderr)
        mpy = json.loads(mp.stdout.strip().splitlines()[-1])
    if not (cpy["ok"] and mpy["ok"]):
        raise SystemExit("verify failed")
    best = mpy["min_ms"]  # the fastest run: least disturbed by other load on a shared machine
    keys = {"ed25519_verify_ms": round(best, 2), "ed25519_verify_median_ms": round(mpy["ms"], 2),
            "ed25519_verify_first_ms": round(mpy["first_ms"], 2),
            "ed25519_verify_ms_cpython": round(cpy["min_ms"], 2),
            "ed25519_c6_estimate_ms": round(best * C6_FACTOR[1], 1)}
    rows = [("verify (MicroPython unix)", f"{best:.2f}", f"{mpy['ms']:.2f}", f"{mpy['first_ms']:.2f}",
             f"C6 est. {best * C6_FACTOR[0]:.0f}..{best * C6_FACTOR[1]:.0f} ms"),
            ("verify (CPython)", f"{cpy['min_ms']:.2f}", f"{cpy['ms']:.2f}", f"{cpy['first_ms']:.2f}",
             f"MicroPython/CPython {best / cpy['min_ms']:.1f}x")]
    return keys, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20, help="verifies per runtime; the median is reported (default 20)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quick", action="store_true", help="smaller virtual-air transfers (16 KB instead of 64 KB)")
    args = ap.parse_args(argv)
    result: dict[str, float] = {}
    rows: list[tuple[str, str, str, str, str]] = []
    k, r = verify_rows(args.n)
    result.update(k)
    rows += r
    from ota_transfer import print_rows, transfer_rows  # the ESP-NOW transfer rows (bench/ota_transfer.py)
    tk, trows = transfer_rows(args.quick)
    result.update(tk)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    print(f"{'row':28} {'best ms':>8} {'median':>8} {'first ms':>9}  note")
    for name, best, med, first, note in rows:
        print(f"{name:28} {best:>8} {med:>8} {first:>9}  {note}")
    print()
    print_rows(trows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
