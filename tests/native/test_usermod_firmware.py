"""flnative frozen into a MicroPython firmware (native/usermod, USER_C_MODULES), built from source and run.

The registry packages hold no complete MicroPython tree (the unix port needs extmod/ and lib/, which none of
them ships), so the firmware is tests/native/fwport: the smallest port (py/ core, a main() that runs a
script) built with MicroPython's own py.mk/mkrules.mk and USER_C_MODULES=native, exactly as a port build
picks up the module. Source: the sdist of `mpy-cross-v6-3` (MicroPython 1.23, the oldest release the device
code supports), downloaded from PyPI by the test itself into the cache when absent (docs/native.md has the
commands); extraction and the
build are cached under $XDG_CACHE_HOME/fieldlink (outside the repository), a rebuild only recompiles what
changed. The firmware then runs the natmod's differential checks (codecs and scanner == device Python ==
PyPI vectors, rules verifier + VM == device Python, heap-locked decode and tick) against the frozen module."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from test_natmod_mpy import vectors  # noqa: F401 (the natmod checks' vectors fixture)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SDIST = "mpy_cross_v6_3-1.1.1.tar.gz"
DOWNLOAD = ["-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps", "mpy-cross-v6-3==1.1.1", "-d"]

pytestmark = pytest.mark.slow


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fieldlink"


def micropython_tree() -> Path:
    """A MicroPython source tree with py/ and shared/: $FIELDLINK_MPY_SRC, else the cached sdist, extracted once."""
    env = os.environ.get("FIELDLINK_MPY_SRC")
    if env:
        return Path(env)
    cache = cache_dir()
    sdist = cache / "sdist" / SDIST
    if not sdist.is_file():  # the registry is the one network place tests may use; fetched once per cache
        cmd = [sys.executable, *DOWNLOAD, str(sdist.parent)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0 and sdist.is_file(), f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}"
    dest = cache / "mpy-src" / SDIST.removesuffix(".tar.gz")
    if not list(dest.glob("*/micropython/py/py.mk")):
        part = dest.with_name(dest.name + ".part")
        if part.exists():
            shutil.rmtree(part)  # our own half-finished extraction from an interrupted run
        part.mkdir(parents=True)
        with tarfile.open(sdist) as tf:
            tf.extractall(part, filter="data")
        if dest.exists():
            shutil.rmtree(dest)
        part.rename(dest)
    tops = list(dest.glob("*/micropython/py/py.mk"))
    assert len(tops) == 1, f"{sdist}: expected one micropython/py/py.mk, found {tops}"
    return tops[0].parent.parent


def build_firmware(top: Path) -> Path:
    if not shutil.which("make") or not shutil.which("cc"):
        pytest.fail("make and cc are needed to build the firmware (.ci/run installs them)")
    key = hashlib.sha256(f"{top}\n{ROOT}".encode()).hexdigest()[:16]
    build = cache_dir() / "fwport-build" / key
    proc = subprocess.run(["make", "-C", str(HERE / "fwport"), "-j2", f"TOP={top}", f"BUILD={build}",
                           f"USER_C_MODULES={ROOT / 'native'}"], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return build / "firmware"


@pytest.fixture(scope="module")
def firmware() -> Path:
    return build_firmware(micropython_tree())


def test_firmware_runs_the_native_checks_on_the_frozen_module(firmware: Path, vectors: Path,  # noqa: F811
                                                             tmp_path: Path) -> None:
    import json

    v = json.loads(vectors.read_text())
    (tmp_path / "fl_vectors.py").write_text("V = " + repr(v) + "\n")
    path = [tmp_path, HERE / "fwport", HERE / "fwport" / "shim", HERE / "mpy", ROOT / "tests" / "device",
            ROOT / "device"]
    proc = subprocess.run([str(firmware), str(HERE / "fwport" / "fw_checks.py"), *map(str, path)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert out.startswith("micropython 1.23.0 flnative FORMAT 2"), out  # the frozen module, not a natmod
    for check in ("codecs", "scanner", "rules", "heap"):
        assert f"OK {check}" in out, out
    assert f"ticks {3 * 400 + 150}" in out and "heap-locked ticks 500, frames 100" in out, out


def test_firmware_has_no_natmod_loader_fallback(firmware: Path, tmp_path: Path) -> None:
    """The firmware imports flnative from itself: an empty sys.path still finds it (frozen, not a file)."""
    script = tmp_path / "t.py"
    script.write_text("import flnative\nprint(flnative.crc16(b'123456789'), type(flnative).__name__)\n")
    proc = subprocess.run([str(firmware), str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.split() == ["10673", "module"], proc.stdout + proc.stderr
