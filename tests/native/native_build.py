"""Builds of native/ for the tests, into temporary directories (nothing lands in the tree).

Every builder raises ToolMissing when its toolchain is not installed: the tests turn that into a
failure, never a skip (CI installs the toolchains, see .ci/run)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NATIVE = ROOT / "native"
sys.path.insert(0, str(NATIVE / "natmod"))
import natmod_build  # noqa: E402

CORE = NATIVE / "core"
CORE_SRC = [CORE / "fl_codec.c", CORE / "fl_verify.c", CORE / "fl_vm.c"]
WARN = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]


class ToolMissing(AssertionError):
    pass


def tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise ToolMissing(f"{name} not found: install it (see .ci/run)")
    return path


def run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def shared_lib(out: Path, sanitize: bool = False, defines: tuple[str, ...] = ()) -> Path:
    """The core as a shared library for ctypes (cc), or with ASan+UBSan (clang)."""
    out.mkdir(parents=True, exist_ok=True)
    so = out / ("libflcore{}{}.so".format("_san" if sanitize else "", "".join("_" + d.lower() for d in defines)))
    dflags = [f"-D{d}" for d in defines]
    if sanitize:
        cmd = [tool("clang"), *WARN, "-g", "-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
               "-fno-omit-frame-pointer", "-shared", "-fPIC", *dflags, "-o", str(so), *map(str, CORE_SRC)]
    else:
        cmd = [tool("cc"), *WARN, "-O2", "-shared", "-fPIC", *dflags, "-o", str(so), *map(str, CORE_SRC)]
    run(cmd)
    return so


def host_program(out: Path, name: str, sources: list[Path], cc: str = "cc", flags: tuple[str, ...] = ()) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    exe = out / name
    run([tool(cc), *WARN, "-O1", "-g", *flags, "-I", str(CORE), "-o", str(exe), *map(str, sources)])
    return exe


def natmod(arch: str, out: Path) -> Path:
    """native/natmod built with MicroPython's dynruntime.mk for arch; returns the .mpy."""
    try:
        return natmod_build.build(arch, out)
    except natmod_build.BuildError as exc:
        raise ToolMissing(str(exc)) from None


def rv32_vectors(out: Path) -> Path:
    """The core's C test vectors as a bare-metal rv32imc program (picolibc, semihosting) for qemu."""
    gcc = tool("riscv64-unknown-elf-gcc")
    specs = subprocess.run([gcc, "--print-file-name=picolibc.specs"], capture_output=True, text=True).stdout.strip()
    if not specs or specs == "picolibc.specs" or not Path(specs).is_file():
        raise ToolMissing("picolibc for riscv64-unknown-elf not found (apt-get install picolibc-riscv64-unknown-elf)")
    out.mkdir(parents=True, exist_ok=True)
    elf = out / "vectors-rv32.elf"
    run([gcc, *WARN, "-Os", "-march=rv32imc", "-mabi=ilp32", f"-specs={specs}", "--oslib=semihost",
         "--crt0=semihost", "-Wl,--defsym=__flash=0x80000000", "-Wl,--defsym=__flash_size=0x400000",
         "-Wl,--defsym=__ram=0x80400000", "-Wl,--defsym=__ram_size=0x400000",
         "-I", str(CORE), "-o", str(elf), str(CORE / "tests" / "vectors.c"), *map(str, CORE_SRC)])
    return elf
