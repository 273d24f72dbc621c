"""fieldlink image: the LittleFS image mounts with littlefs-python and holds the bundle; the merged image's
offsets agree with the partition table; esptool accepts the firmware and bootloader parts."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from fieldlink_host import parttable
from fieldlink_host.boards import load_board
from fieldlink_host.build import build_bundle
from fieldlink_host.cli import main
from fieldlink_host.deploy import LOADER_FILES
from fieldlink_host.errors import FieldlinkError
from fieldlink_host.image import build_fs_image, build_image, merge, read_fs_image
from littlefs import LittleFS

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "build"


def _espimage() -> ModuleType:
    spec = importlib.util.spec_from_file_location("espimage", ROOT / "tests" / "fixtures" / "esp" / "espimage.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


espimage = _espimage()


@pytest.fixture(scope="module")
def s3_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("b") / "bundle"
    build_bundle(str(FIX / "board.toml"), out, app_dir=FIX / "app", device_pkg=FIX / "device" / "fieldlink",
                 revision="r")
    return out


def _mount_independently(data: bytes) -> dict[str, bytes]:
    """Mount with littlefs-python's defaults (block size from MicroPython's esp32 port)."""
    fs = LittleFS(block_size=4096, block_count=0, mount=False)  # block_count 0: read it from the superblock
    fs.context.buffer = bytearray(data)
    fs.mount()
    files: dict[str, bytes] = {}
    for root, _d, names in fs.walk("/"):
        for n in names:
            p = f"{root.rstrip('/')}/{n}"
            with fs.open(p, "rb") as f:
                files[p.lstrip("/")] = f.read()
    assert fs.fs_stat().block_count == len(data) // 4096  # type: ignore[attr-defined]
    return files


def _esptool_image_info(chip: str, path: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "esptool", "--chip", chip, "image-info", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_fs_image_mounts_and_holds_the_bundle(s3_bundle: Path) -> None:
    board = load_board(str(FIX / "board.toml"))
    data = build_fs_image(board, __import__("fieldlink_host.build", fromlist=["x"]).load_bundle(s3_bundle))
    assert len(data) == board.filesystem.size
    files = _mount_independently(data)
    bundle_files = {p.relative_to(s3_bundle).as_posix(): p.read_bytes() for p in s3_bundle.rglob("*")
                    if p.is_file() and p.name != ".fieldlink-build"}  # the build's marker is not deployed
    assert {k[len("fl/a/"):]: v for k, v in files.items() if k.startswith("fl/a/")} == bundle_files
    assert files["fl/active"] == b"a\n"
    assert files["boot.py"] == LOADER_FILES["boot.py"] and files["main.py"] == LOADER_FILES["main.py"]
    assert read_fs_image(data) == files
    # superblock records LittleFS on-disk version 2.0 (so every MicroPython >= 1.23 mounts it)
    assert data[8:16] == b"littlefs"
    assert int.from_bytes(data[20:24], "little") == 0x00020000


@pytest.mark.parametrize("chip,board_name", [("esp32s3", "esp32-s3-devkitc-1"), ("esp32c6", "esp32-c6-devkitc-1")])
def test_merged_image_layout(tmp_path: Path, chip: str, board_name: str) -> None:
    board = load_board(board_name)
    fw = tmp_path / "fw.bin"
    fw.write_bytes(espimage.make_image(chip, 50000, seed=3))
    bl = tmp_path / "bl.bin"
    bl.write_bytes(espimage.make_image(chip, 6000, seed=5, bootloader=True))
    _esptool_image_info(chip, fw)  # the synthetic input is valid for esptool itself
    bundle = build_bundle(board, tmp_path / "bundle", device_pkg=FIX / "device" / "fieldlink", revision="r")
    res = build_image(board, fw, tmp_path / "img.bin", bundle=bundle, bootloader=bl)
    img = (tmp_path / "img.bin").read_bytes()
    vfs = board.filesystem
    assert len(img) == vfs.offset + vfs.size == res.size
    # partition table at 0x8000 decodes back to the board's partitions
    table = parttable.decode(img[0x8000:0x8000 + 0xC00])
    assert [(e.name, e.offset, e.size) for e in table] == [(p.name, p.offset, p.size) for p in board.partitions]
    app = next(e for e in table if e.type == 0)
    fw_bytes = fw.read_bytes()
    assert img[app.offset:app.offset + len(fw_bytes)] == fw_bytes
    assert set(img[app.offset + len(fw_bytes):vfs.offset]) <= {0xFF}
    (tmp_path / "fw-out.bin").write_bytes(img[app.offset:app.offset + len(fw_bytes)])
    info = _esptool_image_info(chip, tmp_path / "fw-out.bin")
    assert "Checksum" in info and "(valid)" in info
    # the bootloader at 0x0 (flash size patched to the board's) is still valid for esptool
    bl_len = len(bl.read_bytes())
    (tmp_path / "bl-out.bin").write_bytes(img[:bl_len])
    info = _esptool_image_info(chip, tmp_path / "bl-out.bin")
    assert "8MB" in info and "invalid" not in info.lower()
    # the filesystem region mounts and holds the bundle's manifest
    files = _mount_independently(img[vfs.offset:vfs.offset + vfs.size])
    assert files["fl/a/manifest.json"] == (tmp_path / "bundle" / "manifest.json").read_bytes()
    assert [r.name for r in res.regions] == ["bootloader", "partitions", "firmware", "filesystem"]
    assert "0x4f0000" in res.layout()


def test_merged_micropython_download_supplies_the_bootloader(tmp_path: Path) -> None:
    board = load_board("esp32-s3-devkitc-1")
    bl = espimage.make_image("esp32s3", 5000, seed=9, bootloader=True)
    app = espimage.make_image("esp32s3", 30000, seed=8)
    table = parttable.encode(board.partitions)
    merge("esp32s3", [(0, bl), (0x8000, table), (0x10000, app)], tmp_path / "download.bin")
    bundle = build_bundle(board, tmp_path / "bundle", device_pkg=FIX / "device" / "fieldlink", revision="r")
    build_image(board, tmp_path / "download.bin", tmp_path / "img.bin", bundle=bundle)
    img = (tmp_path / "img.bin").read_bytes()
    assert img[0x10000:0x10000 + len(app)] == app
    assert hashlib.sha256(img[:len(bl)][24:]).digest() == hashlib.sha256(bl[24:]).digest()


def test_refusals(tmp_path: Path) -> None:
    board = load_board("esp32-c6-devkitc-1")
    bundle = build_bundle(board, tmp_path / "bundle", device_pkg=FIX / "device" / "fieldlink", revision="r")
    s3fw = tmp_path / "s3.bin"
    s3fw.write_bytes(espimage.make_image("esp32s3", 1000))
    bl = tmp_path / "bl.bin"
    bl.write_bytes(espimage.make_image("esp32c6", 1000, bootloader=True))
    with pytest.raises(FieldlinkError, match="chip id"):
        build_image(board, s3fw, tmp_path / "x.bin", bundle=bundle, bootloader=bl)
    c6 = bytearray(espimage.make_image("esp32c6", 1000))
    c6[100] ^= 1
    (tmp_path / "bad.bin").write_bytes(bytes(c6))
    with pytest.raises(FieldlinkError, match="checksum|digest"):
        build_image(board, tmp_path / "bad.bin", tmp_path / "x.bin", bundle=bundle, bootloader=bl)
    (tmp_path / "c6.bin").write_bytes(espimage.make_image("esp32c6", 1000))
    with pytest.raises(FieldlinkError, match="bootloader"):
        build_image(board, tmp_path / "c6.bin", tmp_path / "x.bin", bundle=bundle)
    s3bl = tmp_path / "s3bl.bin"
    s3bl.write_bytes(espimage.make_image("esp32s3", 1000, bootloader=True))
    with pytest.raises(FieldlinkError, match="for board"):
        build_image(load_board("esp32-s3-devkitc-1"), s3fw, tmp_path / "x.bin", bundle=bundle, bootloader=s3bl)


def test_cli_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fw = tmp_path / "fw.bin"
    fw.write_bytes(espimage.make_image("esp32c6", 2000))
    bl = tmp_path / "bl.bin"
    bl.write_bytes(espimage.make_image("esp32c6", 2000, bootloader=True))
    build_bundle("esp32-c6-devkitc-1", tmp_path / "bundle", device_pkg=FIX / "device" / "fieldlink", revision="r")
    rc = main(["image", "--board", "esp32-c6-devkitc-1", "--firmware", str(fw), "--bootloader", str(bl),
               "--bundle", str(tmp_path / "bundle"), "--out", str(tmp_path / "o.bin")])
    out = capsys.readouterr().out
    assert rc == 0 and "filesystem" in out and "0x8000" in out
    rc = main(["image", "--board", "esp32-c6-devkitc-1", "--firmware", str(tmp_path / "nope.bin")])
    assert rc == 1 and "cannot read firmware" in capsys.readouterr().err
