"""The flnative natmod (x64, built with MicroPython's dynruntime.mk into a temp dir) inside the
MicroPython unix port: same results as the device Python code running in the same interpreter and as
the PyPI libraries (vectors computed here), every cut of the frame streams, rules programs ticked side
by side, a VM switch mid-run, and no heap allocation for a tick or a frame decode (heap_lock)."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import crc as crclib
import lockstep
import pytest
from cobs import cobs as cobslib
from fieldlink_host.build import mpy_header_arch
from fieldlink_host.paths import micropython_binary
from fieldlink_host.rules.compiler import compile_file

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REF_CRC = crclib.Calculator(crclib.Crc16.IBM_3740)


def ref_frame(p: bytes) -> bytes:
    return cobslib.encode(p + int(REF_CRC.checksum(p)).to_bytes(2, "big")) + b"\x00"


@pytest.fixture(scope="module")
def vectors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import test_native_codecs as TC
    import test_native_rules as TR
    import test_rules_verify as V

    rng = random.Random(11)
    codec = []
    for data in [b"", b"\x00", b"123456789", bytes(range(1, 255)), bytes(range(256)) * 3,
                 *(bytes(rng.randrange(256) if rng.randrange(4) else 0 for _ in range(rng.randrange(600))) for _ in range(20))]:
        codec.append({"data": data.hex(), "crc": int(REF_CRC.checksum(data)), "cobs": cobslib.encode(data).hex(),
                      "frame": ref_frame(data).hex()})
    streams = []
    for mf in (1, 16, 300):
        for _ in range(3):
            s, good = TC._stream(rng, mf)
            streams.append({"data": s.hex(), "max_frame": mf, "payloads": [p.hex() for p in good]})
    streams[0] = {"data": (b"\x00junk\x00" + b"".join(ref_frame(bytes([i]) * 40) for i in range(1, 6))).hex(),
                  "max_frame": 64, "payloads": [(bytes([i]) * 40).hex() for i in range(1, 6)]}
    bench = TR._load(ROOT / "bench" / "rules.py", "fl_native_bench_rules")
    progs = [compile_file(TR.FIX / "greenhouse.rules.yaml").program] + [bench.program(n) for n in (1, 100, 20)]
    programs = []
    for i, blob in enumerate(progs):
        py_blob = blob if lockstep.python_vm_clamps() else lockstep.model_blob(blob)
        assert py_blob is not None
        programs.append({"blob": blob.hex(), "py_blob": py_blob.hex(), "seed": 1000 + i,
                         "ticks": 400 if i < 3 else 150})
    bad = [{"blob": b.hex()} for _, b, _ in V._cases()] + [{"blob": b.hex()} for b in TR.extra_bad_programs()]
    path = tmp_path_factory.mktemp("natmod-vectors") / "vectors.json"
    path.write_text(json.dumps({"codec": codec, "streams": streams, "programs": programs, "bad": bad}))
    return path


def run_check(natmod: Path, vectors: Path, check: str) -> str:
    path = [natmod.parent, HERE / "mpy", ROOT / "tests" / "device", ROOT / "device" / "sim", ROOT / "device"]
    env = {"MICROPYPATH": ":".join([*map(str, path), ".frozen"]), "PATH": "/usr/bin:/bin", "TMPDIR": str(vectors.parent)}
    proc = subprocess.run([micropython_binary(), "-X", "heapsize=16M", str(HERE / "mpy" / "natmod_checks.py"),
                           str(vectors), check], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0 and f"OK {check}" in proc.stdout, proc.stdout + proc.stderr
    return proc.stdout


def test_natmod_header_is_x64(natmod_x64: Path) -> None:
    data = natmod_x64.read_bytes()
    assert data[0:2] == b"M\x06" and data[2] >> 2 == 2 and mpy_header_arch(data) == "x64"


def test_natmod_codecs_equal_device_code_and_pypi(natmod_x64: Path, vectors: Path) -> None:
    run_check(natmod_x64, vectors, "codecs")


def test_natmod_scanner_every_cut_equals_device_decoder(natmod_x64: Path, vectors: Path) -> None:
    run_check(natmod_x64, vectors, "scanner")


def test_natmod_rules_equal_device_verifier_and_vm(natmod_x64: Path, vectors: Path) -> None:
    out = run_check(natmod_x64, vectors, "rules")
    assert int(out.split("ticks ")[1].split()[0]) == 3 * 400 + 150


def test_natmod_tick_and_frame_decode_allocate_nothing(natmod_x64: Path, vectors: Path) -> None:
    out = run_check(natmod_x64, vectors, "heap")
    assert "heap-locked ticks 500, frames 100" in out


def test_device_code_selects_the_natmod_and_reports_it(natmod_x64: Path, vectors: Path) -> None:
    """fieldlink.runtime.native: uplink decoder and rules engine on the natmod, same results as the
    Python code, heap-free ticks through the engine's VM, and `status` of gateway and node says native."""
    out = run_check(natmod_x64, vectors, "select")
    assert int(out.split("select ")[1].split()[0]) > 0
