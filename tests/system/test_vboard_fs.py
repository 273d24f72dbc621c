"""The virtual board's "/" is its own flash (LittleFS2 in BOARD_DIR/flash/vfs.bin), never the host's:
stock mpremote and ampy can empty it without touching the host, host files are unreachable, what
mpremote copies is inside the flash image (read with littlefs-python), `fieldlink image`'s filesystem
boots as the board's flash, and the board names itself like an ESP32."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fieldlink_host.boards import load_board
from fieldlink_host.build import build_bundle, load_bundle
from fieldlink_host.image import BLOCK_SIZE, build_fs_image
from fieldlink_host.ptyboard import VirtualBoardProcess
from fieldlink_host.virtual import prepare_board_dir
from littlefs import LittleFS

sys.path.insert(0, str(Path(__file__).parent))
from vboard_safety import assert_board_root_is_own, board_root_listing  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "build"
FILES = {"boot.py": "print('boot.py ran')\n", "lib/helper.py": "X = 1\n", "data/log.txt": "line\n" * 10}


@pytest.fixture()
def board(tmp_path: Path) -> Iterator[VirtualBoardProcess]:
    with VirtualBoardProcess(tmp_path / "board", board="esp32-s3-devkitc-1", files=FILES) as vb:
        yield vb


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=90)


def _mpremote(port: str, *args: str) -> str:
    proc = _run("mpremote", "connect", port, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _host_tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_mpremote_rm_r_root_empties_the_board_not_the_host(board: VirtualBoardProcess, tmp_path: Path) -> None:
    sentinel = tmp_path / "host-sentinel"
    (sentinel / "deep").mkdir(parents=True)
    (sentinel / "keep.txt").write_text("host file")
    (sentinel / "deep" / "keep.bin").write_bytes(bytes(range(256)))
    before = _host_tree(sentinel)
    assert assert_board_root_is_own(board.port, board.fs_dir) == ["boot.py", "data", "lib"]

    proc = _run("mpremote", "connect", board.port, "rm", "-r", ":/")
    # what mpremote prints against the ESP32 port: the mount point itself cannot be removed (EPERM)
    assert proc.returncode == 1
    assert "rm -r: cannot remove :/ Operation not permitted" in proc.stdout + proc.stderr
    assert board_root_listing(board.port) == []
    assert board.flash.files() == {}
    assert _host_tree(sentinel) == before
    for name in ("sim_state.json", "sim_board.json", "partitions.json", "flash/vfs.bin"):
        assert (board.fs_dir / name).is_file(), name  # the sim's own files are the host's, not the board's


def test_host_files_are_unreachable(board: VirtualBoardProcess) -> None:
    assert_board_root_is_own(board.port, board.fs_dir)
    script = """\
import os, vfs, sys
def err(f, *a):
    try:
        f(*a)
        return 'ok'
    except OSError as e:
        return e.errno
print(err(open, '/etc/passwd'))
print(err(open, '../../../../etc/passwd'))
print(err(os.stat, '/proc/self/stat'))
print(err(os.listdir, '/usr'))
print(err(os.chdir, '..'), os.getcwd(), sorted(os.listdir()))
print(hasattr(os, 'system'), hasattr(os, 'putenv'), hasattr(vfs, 'VfsPosix'), [m[1] for m in vfs.mount()])
import ffi
print(ffi)
"""
    out = _mpremote(board.port, "exec", script).split("\n")
    # ENOENT, except a path climbing above the root, which LittleFS refuses with EINVAL (the port runs
    # the same extmod/vfs_lfs code, so it answers the same)
    assert out[:4] == ["2", "22", "2", "2"]
    assert out[4] == "2 / ['boot.py', 'data', 'lib']"
    assert out[5] == "False False False ['/']"
    assert out[6] == "None"


def test_mpremote_cp_lands_in_the_flash_image(board: VirtualBoardProcess, tmp_path: Path) -> None:
    assert_board_root_is_own(board.port, board.fs_dir)
    local = tmp_path / "blob.bin"
    local.write_bytes(bytes((i * 31) & 0xFF for i in range(10_000)))
    _mpremote(board.port, "fs", "mkdir", ":up")
    _mpremote(board.port, "fs", "cp", str(local), ":up/blob.bin")
    # read the flash file with littlefs-python directly (the ESP32 port's geometry: 4096-byte blocks over
    # the whole vfs partition), independent of the helpers under test
    size = next(p.size for p in load_board("esp32-s3-devkitc-1").partitions if p.name == "vfs")
    raw = (board.fs_dir / "flash" / "vfs.bin").read_bytes()
    image = raw + b"\xff" * (size - len(raw))
    fs = LittleFS(block_size=BLOCK_SIZE, block_count=size // BLOCK_SIZE, mount=False)
    fs.context.buffer[:] = image
    fs.mount()
    with fs.open("up/blob.bin", "rb") as f:
        assert f.read() == local.read_bytes()
    assert sorted(fs.listdir("/")) == ["boot.py", "data", "lib", "up"]
    with fs.open("data/log.txt", "r") as f:
        assert f.read() == FILES["data/log.txt"]


def test_ampy_sees_and_empties_only_the_board(board: VirtualBoardProcess, tmp_path: Path) -> None:
    assert_board_root_is_own(board.port, board.fs_dir)
    ls = _run("ampy.cli", "-p", board.port, "ls", "-r", "/")
    assert ls.returncode == 0 and ls.stdout.split() == ["/boot.py", "/data/log.txt", "/lib/helper.py"]
    sentinel = tmp_path / "host.txt"
    sentinel.write_text("host")
    # ampy's rmdir removes everything below, then fails on the root itself (os.chdir('..')/rmdir('/'))
    r = _run("ampy.cli", "-p", board.port, "rmdir", "/")
    assert r.returncode != 0 and "No such directory: /" in r.stderr
    assert board.flash.files() == {} and sentinel.read_text() == "host"


def test_board_boots_like_an_esp32(board: VirtualBoardProcess) -> None:
    script = ("import os, sys\n"
              "print(sys.implementation._machine)\n"
              "u = os.uname()\n"
              "print(u.sysname, u.machine == sys.implementation._machine, u.release.split('.')[0])\n"
              "print('gc' in globals(), 'vfs' in globals(), vfs.mount()[0][1], sys.platform)\n"
              "print(sys.path)\n")
    out = _mpremote(board.port, "exec", script).split("\n")
    assert out[0] == "esp32-s3-devkitc-1 with ESP32S3"
    assert out[1] == "esp32 True 1"
    assert out[2] == "True True / linux"
    assert out[3] == "['', '.frozen', '/lib']"


def test_fieldlink_image_filesystem_is_the_board_flash(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("import fieldlink\nf = open('ran.txt', 'w')\nf.write('image ' + fieldlink.hello())\n"
                                 "f.close()\n")
    bundle = tmp_path / "bundle"
    build_bundle(str(FIX / "board.toml"), bundle, app_dir=app, device_pkg=FIX / "device" / "fieldlink", revision="r")
    board_toml = load_board(str(FIX / "board.toml"))
    d = tmp_path / "board"
    prepare_board_dir(d, str(FIX / "board.toml"))
    (d / "flash").mkdir()
    (d / "flash" / "vfs.bin").write_bytes(build_fs_image(board_toml, load_bundle(bundle)))  # the image's vfs partition
    with VirtualBoardProcess(d, board=str(FIX / "board.toml")) as vb:
        listing = assert_board_root_is_own(vb.port, d)
        assert "fl" in listing and "main.py" in listing
        assert _mpremote(vb.port, "fs", "cat", ":fl/active").strip() == "a"
        # the loader in the image ran the bundled app from slot fl/a at boot (mpremote's soft resets
        # interrupt it, the soft reboot after `fs cat` runs it again: wait for a complete file)
        end = time.monotonic() + 30
        while time.monotonic() < end and vb.flash.files().get("ran.txt") != b"image fieldlink fixture 9.8.7":
            time.sleep(0.1)
        assert vb.flash.files().get("ran.txt") == b"image fieldlink fixture 9.8.7"
