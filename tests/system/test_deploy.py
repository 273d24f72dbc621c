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
from fieldlink_host.virtual import BoardFlash

sys.path.insert(0, str(Path(__file__).parent))
from vboard_safety import assert_board_root_is_own  # noqa: E402

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
        assert_board_root_is_own(vb.port, vb.fs_dir)  # every test here writes and removes files on it
        yield vb


def _text(flash: BoardFlash, path: str) -> str | None:
    data = flash.files().get(path)
    return None if data is None else data.decode()


def _wait_file(flash: BoardFlash, path: str, content: str, timeout: float = 60) -> str:
    """Poll the board's flash (a live board's image is always a consistent LittleFS) for the file."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _text(flash, path) == content:
            return content
        time.sleep(0.1)
    return _text(flash, path) or "<missing>"


def _slot(flash: BoardFlash, slot: str) -> dict[str, bytes]:
    pre = f"fl/{slot}/"
    return {k[len(pre):]: v for k, v in flash.files().items() if k.startswith(pre)}


def _rm(port: str, path: str) -> None:
    # mpremote soft-resets into the raw REPL, which runs boot.py only: the app does not run again
    proc = subprocess.run([sys.executable, "-m", "mpremote", "connect", port, "rm", ":" + path],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("via", ["mpremote", "ampy"])
def test_first_second_and_changed_deploy(vboard: VirtualBoardProcess, tmp_path: Path, via: str) -> None:
    fs = vboard.flash
    v1 = _bundle(tmp_path, "v1")
    n_app = len(list((v1 / "manifest.json").read_text().split('"path"'))) - 1
    r1 = deploy(vboard.port, v1, via=via)
    assert r1.switched and r1.files_copied == n_app and r1.previous is None and r1.slot == "a"
    assert _text(fs, "fl/active") == "a\n"
    assert _wait_file(fs, "ran.txt", "v1 fieldlink fixture 9.8.7") == "v1 fieldlink fixture 9.8.7"
    slot_a = _slot(fs, "a")
    for p in v1.rglob("*"):
        if p.is_file() and p.name != ".fieldlink-build":  # the build's marker is not deployed
            assert slot_a[str(p.relative_to(v1))] == p.read_bytes()

    r2 = deploy(vboard.port, v1, via=via)
    if via == "mpremote":
        assert not r2.switched and r2.files_copied == 0 and r2.bytes_copied == 0
    else:  # ampy always copies everything
        assert r2.files_copied == n_app and r2.slot == "b"

    # one changed app file: mpremote copies that file (+ the new manifest.json), reuses the rest on the device
    v2 = tmp_path / "bundle-v2"
    app2 = _app(tmp_path, "v2")
    build_bundle(BOARD, v2, app_dir=app2, device_pkg=FIX / "device" / "fieldlink", revision="r")
    _rm(vboard.port, "ran.txt")
    r3 = deploy(vboard.port, v2, via=via)
    if via == "mpremote":
        assert r3.files_copied == 1 and r3.meta_copied == 1 and r3.local_copies == n_app - 1
        assert r3.slot == "b" and r3.previous == "a"
    else:
        assert r3.files_copied == n_app
    active = (_text(fs, "fl/active") or "").strip()
    assert fs.read(f"fl/{active}/main.mpy") == (v2 / "main.mpy").read_bytes()
    assert _wait_file(fs, "ran.txt", "v2 fieldlink fixture 9.8.7") == "v2 fieldlink fixture 9.8.7"


def test_stale_files_removed_and_no_reset(vboard: VirtualBoardProcess, tmp_path: Path) -> None:
    fs = vboard.flash
    deploy(vboard.port, _bundle(tmp_path, "v1"))  # slot a
    deploy(vboard.port, _bundle(tmp_path, "v2"))  # slot b
    assert _wait_file(fs, "ran.txt", "v2 fieldlink fixture 9.8.7") == "v2 fieldlink fixture 9.8.7"
    make_stale = ("import os\nf = open('fl/a/stale.py', 'w'); f.write('x = 1\\n'); f.close()\n"
                  "os.mkdir('fl/a/olddir')\nf = open('fl/a/olddir/f.txt', 'w'); f.write('x'); f.close()\n"
                  "os.remove('ran.txt')\n")
    proc = subprocess.run([sys.executable, "-m", "mpremote", "connect", vboard.port, "exec", make_stale],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "stale.py" in _slot(fs, "a") and "ran.txt" not in fs.files()
    r = deploy(vboard.port, _bundle(tmp_path, "v3"), reset=False)
    assert r.slot == "a" and r.removed == 2 and not r.reset
    slot_a = _slot(fs, "a")
    assert "stale.py" not in slot_a and not any(k.startswith("olddir") for k in slot_a)
    assert "olddir" not in fs.listdir("fl/a")
    time.sleep(0.5)
    assert "ran.txt" not in fs.files()  # --no-reset: the app did not restart


def test_killed_deploy_leaves_old_app(vboard: VirtualBoardProcess, tmp_path: Path) -> None:
    fs = vboard.flash
    deploy(vboard.port, _bundle(tmp_path, "v1"))
    assert _wait_file(fs, "ran.txt", "v1 fieldlink fixture 9.8.7") == "v1 fieldlink fixture 9.8.7"
    old = _slot(fs, "a")
    big = _bundle(tmp_path, "v2", big=400_000)
    blob = (big / "blob.bin").read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "fieldlink_host", "deploy", "--port", vboard.port,
                             "--bundle", str(big)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # LittleFS writes a file's data blocks as they fill (its size is committed only on close): once the
    # blob's third 4 KiB block is in the raw flash, the copy is under way
    marker = blob[8192:12288]
    end = time.monotonic() + 60
    while time.monotonic() < end and marker not in fs.image() and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "deploy finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _text(fs, "fl/active") == "a\n"
    assert fs.files().get("fl/b/blob.bin") != blob
    assert _slot(fs, "a") == old
    # the board still boots the old app. Reboot it the way deploy does: Ctrl-D at the friendly REPL (boot.py,
    # then main.py). Not `mpremote exec "import sys; sys.exit()"`: that soft reset happens in the raw REPL,
    # which runs boot.py only (as on the firmware); main.py ran only when mpremote's Ctrl-B (leave the raw
    # REPL) reached the board before the interpreter's exit was seen, a race lost under load.
    _rm(vboard.port, "ran.txt")
    with serial.Serial(vboard.port, 115200, timeout=0.2) as ser:
        _soft_reset_friendly(ser, timeout=60)
    assert _wait_file(fs, "ran.txt", "v1 fieldlink fixture 9.8.7") == "v1 fieldlink fixture 9.8.7"
    # and the next deploy completes
    r = deploy(vboard.port, big)
    assert r.slot == "b" and fs.read("fl/b/blob.bin") == blob
    assert _wait_file(fs, "ran.txt", "v2 fieldlink fixture 9.8.7") == "v2 fieldlink fixture 9.8.7"


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
