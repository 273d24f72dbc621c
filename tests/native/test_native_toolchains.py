"""The C core under sanitizers and fuzzers, on an emulated rv32imc CPU, and through the cross compilers.
Each toolchain is required: a missing one fails the test (CI installs them, .ci/run)."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import native_build as build
import pytest
from fieldlink_host.build import mpy_header_arch

CORE = build.CORE
FUZZ_RUNS = int(os.environ.get("FIELDLINK_FUZZ_RUNS", "20000"))     # raise for longer fuzzing
FUZZ_SECONDS = int(os.environ.get("FIELDLINK_FUZZ_SECONDS", "0"))   # or run for a time instead


def test_vectors_native(native_tmp: Path) -> None:
    exe = build.host_program(native_tmp / "vec", "vectors", [CORE / "tests" / "vectors.c", *build.CORE_SRC])
    res = build.run([str(exe)])
    assert "vectors: " in res.stdout and " 0 failed" in res.stdout, res.stdout


def test_vectors_with_address_and_undefined_sanitizers(native_tmp: Path) -> None:
    exe = build.host_program(native_tmp / "vec-san", "vectors", [CORE / "tests" / "vectors.c", *build.CORE_SRC],
                             cc="clang", flags=("-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                                                "-fno-omit-frame-pointer"))
    res = build.run([str(exe)])
    assert " 0 failed" in res.stdout and "runtime error" not in res.stderr, res.stdout + res.stderr


def _frame_seeds() -> list[bytes]:
    from cobs import cobs as cobslib
    from fieldlink.codec.crc import crc16

    def frame(p: bytes) -> bytes:
        return cobslib.encode(p + crc16(p).to_bytes(2, "big")) + b"\x00"

    rng = random.Random(5)
    seeds = [bytes([4, 0]) + frame(b"") + frame(b"\x00" * 20) + b"junk\x00" + frame(bytes(range(1, 255)) * 2),
             bytes([255, 7]) + frame(bytes(rng.randrange(256) for _ in range(900))) + b"\x00\x00",
             bytes([0, 0]) + b"\x01\x01\x01\x00" + frame(b"x" * 9)]
    return seeds


def _rule_seeds() -> list[bytes]:
    import test_native_rules as R
    import test_rules_verify as V
    from fieldlink_host.rules.compiler import compile_file

    bench = R._load(R.ROOT / "bench" / "rules.py", "fl_native_bench_rules")
    good = [bench.program(n) for n in (1, 20, 100)] + [compile_file(R.FIX / "greenhouse.rules.yaml").program]
    return good + [b for _, b, _ in V._cases()] + R.extra_bad_programs()


def _libfuzzer(native_tmp: Path, target: str, seeds: list[bytes]) -> None:
    exe = build.host_program(native_tmp / "fuzz", f"fuzz_{target}", [CORE / "fuzz" / f"fuzz_{target}.c",
                                                                     *build.CORE_SRC],
                             cc="clang", flags=("-fsanitize=fuzzer,address,undefined",
                                                "-fno-sanitize-recover=all"))
    corpus = native_tmp / f"corpus-{target}"
    corpus.mkdir(exist_ok=True)
    for i, s in enumerate(seeds):
        (corpus / f"seed{i:03d}").write_bytes(s)
    args = [str(exe), f"-runs={FUZZ_RUNS}", "-seed=1", "-max_len=9000", f"-artifact_prefix={native_tmp}/",
            str(corpus)]
    if FUZZ_SECONDS:
        args[1] = f"-max_total_time={FUZZ_SECONDS}"
    res = subprocess.run(args, capture_output=True, text=True, timeout=max(600, FUZZ_SECONDS + 120))
    assert res.returncode == 0, res.stderr[-4000:]
    assert "Done" in res.stderr and "ERROR" not in res.stderr, res.stderr[-2000:]


@pytest.mark.slow
def test_libfuzzer_frame_scanner(native_tmp: Path) -> None:
    _libfuzzer(native_tmp, "frame", _frame_seeds())


@pytest.mark.slow
def test_libfuzzer_verifier_and_vm(native_tmp: Path) -> None:
    _libfuzzer(native_tmp, "rules", _rule_seeds())


@pytest.mark.slow
def test_bounded_random_driver_gcc_sanitizers(native_tmp: Path) -> None:
    """The same targets without libFuzzer: gcc + ASan/UBSan and the bounded mutation driver."""
    seeds = native_tmp / "driver-seeds"
    seeds.mkdir(exist_ok=True)
    for target, blobs in (("frame", _frame_seeds()), ("rules", _rule_seeds())):
        files = []
        for i, s in enumerate(blobs):
            f = seeds / f"{target}{i:03d}"
            f.write_bytes(s)
            files.append(str(f))
        exe = build.host_program(native_tmp / "driver", f"drv_{target}",
                                 [CORE / "fuzz" / f"fuzz_{target}.c", CORE / "fuzz" / "fuzz_driver.c", *build.CORE_SRC],
                                 flags=("-fsanitize=address,undefined", "-fno-sanitize-recover=all"))
        res = build.run([str(exe), "-n", "1500", "-s", "7", *files])
        assert f"fuzz: {len(files)} seeds, 1500 mutations, no failure" in res.stdout


def test_vectors_on_emulated_rv32imc(native_tmp: Path) -> None:
    elf = build.rv32_vectors(native_tmp / "rv32")
    head = elf.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and head[4] == 1 and int.from_bytes(head[18:20], "little") == 243  # ELF32, RISC-V
    qemu = build.tool("qemu-system-riscv32")
    res = subprocess.run([qemu, "-machine", "virt", "-nographic", "-bios", "none", "-kernel", str(elf),
                          "-semihosting-config", "enable=on,target=native", "-monitor", "none", "-serial", "none"],
                         capture_output=True, text=True, timeout=300)
    text = res.stdout + res.stderr  # semihosting console output arrives on qemu's stderr
    assert res.returncode == 0 and " 0 failed" in text, text
    assert int(text.split("vectors: ")[1].split()[0]) >= 60


def test_natmod_rv32imc_builds_with_the_right_header(natmod_rv32imc: Path) -> None:
    data = natmod_rv32imc.read_bytes()
    # .mpy header: 'M', version 6, arch in bits 2..7 of byte 2 (MP_NATIVE_ARCH_RV32IMC = 11)
    assert data[0:2] == b"M\x06" and data[2] >> 2 == 11
    assert mpy_header_arch(data) == "rv32imc"


@pytest.mark.parametrize("src", [p.name for p in build.CORE_SRC])
def test_core_compiles_warning_free_for_xtensa(native_tmp: Path, src: str) -> None:
    """Portability check for the ESP32 family with Debian's lx106 compiler (no windowed-ABI compiler in
    Debian): freestanding C99, -Wall -Wextra -Werror; only libgcc helpers may be left undefined."""
    gcc = build.tool("xtensa-lx106-elf-gcc")
    out = native_tmp / "xtensa"
    out.mkdir(exist_ok=True)
    obj = out / (src + ".o")
    build.run([gcc, *build.WARN, "-ffreestanding", "-Os", "-mlongcalls", "-I", str(CORE), "-c", str(CORE / src),
               "-o", str(obj)])
    nm = build.run([build.tool("xtensa-lx106-elf-nm"), "-u", str(obj)]).stdout.split()
    undefined = {s for s in nm if s != "U"}
    assert all(s.startswith("__") or s.startswith("fl_") for s in undefined), undefined
