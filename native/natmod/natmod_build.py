"""Build the flnative natmod for one arch into a directory (tests, bench): `make` in a copy of native/
so nothing lands in the source tree. Needs make, the arch's compiler, pyelftools (mpy_ld) and a
MicroPython tree: $MPY_DIR, else shared/micropython beside the repository (development kit).

    python native/natmod/natmod_build.py ARCH OUTDIR     ->  OUTDIR/ARCH/flnative.mpy
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

NATIVE = Path(__file__).resolve().parents[1]
ROOT = NATIVE.parent
COMPILERS = {"x64": "cc", "rv32imc": "riscv64-unknown-elf-gcc", "xtensawin": "xtensa-esp32-elf-gcc"}


class BuildError(AssertionError):
    pass


def mpy_dir() -> Path:
    env = os.environ.get("MPY_DIR")
    if env:
        return Path(env).resolve()
    for parent in ROOT.parents:
        cand = parent / "shared" / "micropython"
        if (cand / "py" / "dynruntime.mk").is_file():
            return cand
    raise BuildError("no MicroPython tree for natmod builds: set MPY_DIR (see docs/native.md)")


def build(arch: str, out: Path) -> Path:
    """native/natmod built for arch; returns out/arch/flnative.mpy."""
    for tool in ("make", COMPILERS.get(arch, "cc")):
        if not shutil.which(tool):
            raise BuildError(f"{tool} not found: install it (see .ci/run, docs/native.md)")
    out = Path(out)
    work = out / f"src-{arch}"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(NATIVE, work / "native", ignore=shutil.ignore_patterns("build*", "*.mpy", "*.o", "__pycache__"))
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")  # mpy_ld's deps
    dest = out / arch
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["make", "-C", str(work / "native" / "natmod"), f"ARCH={arch}", f"MPY_DIR={mpy_dir()}",
                           f"OUT={dest}", "PYTHON=" + sys.executable], env=env, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        raise BuildError(f"natmod build for {arch} failed:\n{proc.stdout}\n{proc.stderr}")
    return dest / "flnative.mpy"


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    print(build(sys.argv[1], Path(sys.argv[2])))
