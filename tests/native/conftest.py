"""Session-wide native builds: each is compiled once per pytest session into a temp dir. A missing
toolchain fails the test that needs it (build.ToolMissing), it never skips."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import native_build as build  # noqa: E402
from ccore import Core  # noqa: E402


@pytest.fixture(scope="session")
def native_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("native")


@pytest.fixture(scope="session")
def core(native_tmp: Path) -> Core:
    return Core(str(build.shared_lib(native_tmp / "so")))


@pytest.fixture(scope="session")
def natmod_x64(native_tmp: Path) -> Path:
    return build.natmod("x64", native_tmp / "natmod")


@pytest.fixture(scope="session")
def core_softdiv(native_tmp: Path) -> Core:
    """The core with the software 64-bit division that 32-bit targets (rv32imc, xtensa) use."""
    return Core(str(build.shared_lib(native_tmp / "so", defines=("FL_SOFT_DIV64",))))


@pytest.fixture(scope="session")
def natmod_rv32imc(native_tmp: Path) -> Path:
    return build.natmod("rv32imc", native_tmp / "natmod")
