"""fieldlink.ota's Ed25519 and SHA-512 against the real libraries (`cryptography`, hashlib) on random
keys, messages and lengths, in CPython and in the MicroPython unix port (one subprocess per test)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fieldlink.ota import ed25519
from fieldlink.ota.sha512 import Sha512
from fieldlink_host.paths import micropython_binary, micropython_path

MPY_VERIFY = """
import sys, json, binascii
from fieldlink.ota.ed25519 import verify
cases = json.loads(sys.stdin.read())
out = [verify(binascii.unhexlify(p), binascii.unhexlify(m), binascii.unhexlify(s)) for p, m, s in cases]
print(json.dumps(out))
"""

MPY_SHA = """
import sys, json, binascii
from fieldlink.ota.sha512 import Sha512, sha512, HAVE_NATIVE
msgs = json.loads(sys.stdin.read())
print(json.dumps([HAVE_NATIVE] + [Sha512(binascii.unhexlify(m)).hexdigest() for m in msgs]))
"""


def _mpy(code: str, data: object) -> object:
    env = dict(os.environ, MICROPYPATH=micropython_path())
    proc = subprocess.run([micropython_binary(), "-X", "heapsize=16M", "-c", code], input=json.dumps(data),
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cases(n: int) -> tuple[list[list[str]], list[bool]]:
    rnd = random.Random(8032)
    cases: list[list[str]] = []
    expect: list[bool] = []
    for i in range(n):
        key = Ed25519PrivateKey.from_private_bytes(rnd.randbytes(32))
        pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        msg = rnd.randbytes(rnd.choice([0, 1, 31, 64, 127, 128, 300, 1000]))
        sig = key.sign(msg)
        cases.append([pub.hex(), msg.hex(), sig.hex()])
        expect.append(True)
        # one tampered variant per key: signature, message or key, chosen by i
        bad = bytearray([sig, msg + b"x", pub][i % 3])
        j = rnd.randrange(len(bad))
        bad[j] ^= 1 << rnd.randrange(8)
        t = [pub, msg, sig]
        t[[2, 1, 0][i % 3]] = bytes(bad)
        cases.append([t[0].hex(), t[1].hex(), t[2].hex()])
        expect.append(False)
    return cases, expect


def test_random_signatures_cpython_and_micropython_agree_with_cryptography() -> None:
    cases, expect = _cases(24)
    got = [ed25519.verify(bytes.fromhex(p), bytes.fromhex(m), bytes.fromhex(s)) for p, m, s in cases]
    assert got == expect
    assert _mpy(MPY_VERIFY, cases) == expect


def test_sha512_random_lengths_match_hashlib_in_both_runtimes() -> None:
    rnd = random.Random(180)
    msgs = [rnd.randbytes(n) for n in [0, 1, 55, 111, 112, 119, 120, 127, 128, 129, 239, 240, 256, 513, 2000]]
    want = [hashlib.sha512(m).hexdigest() for m in msgs]
    assert [Sha512(m).hexdigest() for m in msgs] == want
    res = _mpy(MPY_SHA, [m.hex() for m in msgs])
    assert isinstance(res, list)
    assert res[0] is False  # the unix port's hashlib has no sha512: the pure-Python one is what runs
    assert res[1:] == want
