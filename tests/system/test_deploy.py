"""fieldlink deploy against the virtual board through real mpremote and real ampy: the first deploy copies
everything, the second nothing, a changed file copies one; a killed deploy leaves the old app in place;
the deployed app boots through the loader after the soft reset."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from fieldlink_host.build import build_bundle
from fieldlink_host.deploy import _soft_reset_friendly, deploy
from fieldlink_host.errors import FieldlinkError
from fieldlink_host.ptyboard import VirtualBoardProcess

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "build"
BOARD = str(FIX / "board.toml")
APP_MAIN = "import fieldlink\nf = open('ran.txt', 'w')\nf.write({tag!r} + ' ' + fieldlink.hello())\nf.close()\n"


def _app(tmp: Path, tag: str, big: int = 0) -> Path:
    app = tmp / f"app-{tag}"
    if app.exists():
        shutil.rmtree(app)
    app.mkdir(parents=True)
    (app / "main.py").write_text(APP_MAIN.format(tag=tag))
    (app / "settings.json").write_text('{"interval": 5}\n')
    if big:
        (app / "blob.bin").write_bytes(bytes((i * 7 + len(tag)) & 0xFF for i in range(big)))
    return app


def _bundle(tmp: Path, tag: str, big: int = 0) -> Path:
    out = tmp / f"bundle-{tag}"
    build_bundle(BOARD, out, app_dir=_app(tmp, tag, big), device_pkg=FIX / "device" / "fieldlink", revision="r")
    return out


@pytest.fixture()
def vboard(tmp_path: Path) -> Iterator[VirtualBoardProcess]:
    with VirtualBoardProcess(tmp_path / "fs") as vb:
        yield vb


def _wait_file(p: Path, content: str, timeout: float = 60) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if p.exists() and p.read_text() == content:
            return content
        time.sleep(0.05)
    return p.read_text() if p.exists() else "<missing>"


@pytest.mark.parametrize("via", ["mpremote", "ampy"])
def test_first_second_and_changed_deploy(vboard: VirtualBoardProcess, tmp_path: Path, via: str) -> None:
    fs = vboard.fs_dir
    v1 = _bundle(tmp_path, "v1")
    n_app = len(list((v1 / "manifest.json").read_text().split('"path"'))) - 1
    r1 = deploy(vboard.port, v1, via=via)
    assert r1.switched and r1.files_copied == n_app and r1.previous is None and r1.slot == "a"
    assert (fs / "fl" / "active").read_text() == "a\n"
    assert _wait_file(fs / "ran.txt", "v1 fieldlink fixture 9.8.7") == "v1 fieldlink fixture 9.8.7"
    for p in v1.rglob("*"):
        if p.is_file() and p.name != ".fieldlink-build":  # the build's marker is not deployed
            assert (fs / "fl" / "a" / p.relative_to(v1)).read_bytes() == p.read_bytes()

    r2 = deploy(vboard.port, v1, via=via)
    if via == "mpremote":
        assert not r2.switched and r2.files_copied == 0 and r2.bytes_copied == 0
    else:  # ampy always copies everything
        assert r2.files_copied == n_app and r2.slot == "b"

    # one changed app file: mpremote copies that file (+ the new manifest.json), reuses the rest on the device
    v2 = tmp_path / "bundle-v2"
    app2 = _app(tmp_path, "v2")
    build_bundle(BOARD, v2, app_dir=app2, device_pkg=FIX / "device" / "fieldlink", revision="r")
    (fs / "ran.txt").unlink()
    r3 = deploy(vboard.port, v2, via=via)
    if via == "mpremote":
        assert r3.files_copied == 1 and r3.meta_copied == 1 and r3.local_copies == n_app - 1
        assert r3.slot == "b" and r3.previous == "a"
    else:
        assert r3.files_copied == n_app
    active = (fs / "fl" / "active").read_text().strip()
    assert (fs / "fl" / active / "main.mpy").read_bytes() == (v2 / "main.mpy").read_bytes()
    assert _wait_file(fs / "ran.txt", "v2 fieldlink fixture 9.8.7") == "v2 fieldlink fixture 9.8.7"


def test_stale_files_removed_and_no_reset(vboard: VirtualBoardProcess, tmp_path: Path) -> None:
    fs = vboard.fs_dir
    deploy(vboard.port, _bundle(tmp_path, "v1"))  # slot a
    deploy(vboard.port, _bundle(tmp_path, "v2"))  # slot b
    (fs / "fl" / "a" / "stale.py").write_text("x = 1\n")
    (fs / "fl" / "a" / "olddir").mkdir()
    (fs / "fl" / "a" / "olddir" / "f.txt").write_text("x")
    assert _wait_file(fs / "ran.txt", "v2 fieldlink fixture 9.8.7") == "v2 fieldlink fixture 9.8.7"
    (fs / "ran.txt").unlink()
    r = deploy(vboard.port, _bundle(tmp_path, "v3"), reset=False)
    assert r.slot == "a" and r.removed == 2 and not r.reset
    assert not (fs / "fl" / "a" / "stale.py").exists() and not (fs / "fl" / "a" / "olddir").exists()
    time.sleep(0.5)
    assert not (fs / "ran.txt").exists()  # --no-reset: the app did not restart


def test_killed_deploy_leaves_old_app(vboard: VirtualBoardProcess, tmp_path: Path) -> None:
    fs = vboard.fs_dir
    deploy(vboard.port, _bundle(tmp_path, "v1"))
    assert _wait_file(fs / "ran.txt", "v1 fieldlink fixture 9.8.7") == "v1 fieldlink fixture 9.8.7"
    old = {p.relative_to(fs / "fl" / "a"): p.read_bytes() for p in (fs / "fl" / "a").rglob("*") if p.is_file()}
    big = _bundle(tmp_path, "v2", big=400_000)
    proc = subprocess.Popen([sys.executable, "-m", "fieldlink_host", "deploy", "--port", vboard.port,
                             "--bundle", str(big)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    blob = fs / "fl" / "b" / "blob.bin"
    end = time.monotonic() + 60
    while time.monotonic() < end and not (blob.exists() and blob.stat().st_size > 20_000):
        time.sleep(0.01)
    assert blob.exists() and 0 < blob.stat().st_size < 400_000, "deploy finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (fs / "fl" / "active").read_text() == "a\n"
    assert {p.relative_to(fs / "fl" / "a"): p.read_bytes() for p in (fs / "fl" / "a").rglob("*") if p.is_file()} == old
    # the board still boots the old app. Reboot it the way deploy does: Ctrl-D at the friendly REPL (boot.py,
    # then main.py). Not `mpremote exec "import sys; sys.exit()"`: that soft reset happens in the raw REPL,
    # which runs boot.py only (as on the firmware); main.py ran only when mpremote's Ctrl-B (leave the raw
    # REPL) reached the board before the interpreter's exit was seen, a race lost under load.
    (fs / "ran.txt").unlink()
    with serial.Serial(vboard.port, 115200, timeout=0.2) as ser:
        _soft_reset_friendly(ser, timeout=60)
    assert _wait_file(fs / "ran.txt", "v1 fieldlink fixture 9.8.7") == "v1 fieldlink fixture 9.8.7"
    # and the next deploy completes, reusing what the killed one already sent
    r = deploy(vboard.port, big)
    assert r.slot == "b" and (fs / "fl" / "b" / "blob.bin").read_bytes() == (big / "blob.bin").read_bytes()
    assert _wait_file(fs / "ran.txt", "v2 fieldlink fixture 9.8.7") == "v2 fieldlink fixture 9.8.7"


def test_refuses_other_board_and_bad_port(vboard: VirtualBoardProcess, tmp_path: Path) -> None:
    deploy(vboard.port, _bundle(tmp_path, "v1"))
    other = tmp_path / "other"
    text = Path(BOARD).read_text().replace('name = "fixture-node"', 'name = "other-node"')
    (tmp_path / "other.toml").write_text(text)
    build_bundle(str(tmp_path / "other.toml"), other, device_pkg=FIX / "device" / "fieldlink", revision="r")
    with pytest.raises(FieldlinkError, match="--force"):
        deploy(vboard.port, other)
    assert deploy(vboard.port, other, force=True).switched
    with pytest.raises(FieldlinkError):
        deploy("/dev/nonexistent-port", other)


def test_cli_deploy(vboard: VirtualBoardProcess, tmp_path: Path) -> None:
    b = _bundle(tmp_path, "v1")
    proc = subprocess.run([sys.executable, "-m", "fieldlink_host", "deploy", "--port", vboard.port, "--bundle",
                           str(b), "--via", "ampy"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "copied via ampy" in proc.stdout and "-> a" in proc.stdout
