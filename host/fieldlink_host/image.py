"""Build a board's filesystem image (LittleFS v2) holding a bundle, and merge bootloader, partition
table, MicroPython firmware and filesystem into one flashable image (esptool merge-bin).

The filesystem has the device layout of docs/deploy.md: the loader ``boot.py``/``main.py``, the
bundle in app slot ``fl/a`` and ``fl/active`` = ``a``. LittleFS geometry follows MicroPython's ESP32
port: 4096-byte blocks over the whole ``vfs`` partition, read/prog size 32, lookahead 32, names up to
255 bytes, on-disk version 2.0 (mountable by every MicroPython >= 1.23).

The bootloader is not shipped by esptool (it ships only its flasher stubs), so it comes from
``--bootloader`` or, when ``--firmware`` is a merged MicroPython download (bootloader at 0x0, partition
table at 0x8000, app at 0x10000 — what micropython.org publishes for ESP32-S3/C6), from the firmware
file itself.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fieldlink_host import parttable
from fieldlink_host.boards import BOOTLOADER_OFFSET, PARTITION_TABLE_OFFSET, Board, load_board
from fieldlink_host.build import Bundle, build_bundle, bundle_payload_files, load_bundle
from fieldlink_host.deploy import ACTIVE, LOADER_FILES, SLOT_ROOT, SLOTS
from fieldlink_host.errors import FieldlinkError
from fieldlink_host.fsio import check_output, from_os_error, read_bytes, user_errors

BLOCK_SIZE = 4096
LFS_READ_SIZE = 32
LFS_PROG_SIZE = 32
LFS_LOOKAHEAD = 32
LFS_NAME_MAX = 255
LFS_DISK_VERSION = 0x00020000
FLASH_SIZE_NAMES = {1 << 20: "1MB", 2 << 20: "2MB", 4 << 20: "4MB", 8 << 20: "8MB", 16 << 20: "16MB",
                    32 << 20: "32MB"}


@dataclass(frozen=True)
class Region:
    name: str
    offset: int
    size: int
    source: str

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True)
class ImageResult:
    path: Path
    size: int
    regions: tuple[Region, ...]

    def layout(self) -> str:
        lines = [f"{'offset':>10} {'end':>10} {'size':>10}  region       source"]
        for r in self.regions:
            lines.append(f"{r.offset:#10x} {r.end:#10x} {r.size:>10}  {r.name:<12} {r.source}")
        lines.append(f"{self.path}: {self.size} bytes")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------- LittleFS

def _lfs(block_count: int, *, mount: bool = True) -> object:
    from littlefs import LittleFS

    return LittleFS(block_size=BLOCK_SIZE, block_count=block_count, read_size=LFS_READ_SIZE,
                    prog_size=LFS_PROG_SIZE, lookahead_size=LFS_LOOKAHEAD, name_max=LFS_NAME_MAX,
                    disk_version=LFS_DISK_VERSION, block_cycles=100, mount=mount)


def filesystem_files(bundle: Bundle, slot: str = SLOTS[0]) -> dict[str, bytes]:
    """Device path -> content for a fresh filesystem holding ``bundle`` in ``slot``."""
    files = dict(LOADER_FILES)
    for rel in bundle_payload_files(bundle):
        files[f"{SLOT_ROOT}/{slot}/{rel}"] = (bundle.root / rel).read_bytes()
    files[ACTIVE] = slot.encode() + b"\n"
    return files


def build_fs_image(board: Board, bundle: Bundle) -> bytes:
    """A LittleFS v2 image exactly the size of the board's ``vfs`` partition, holding the bundle."""
    part = board.filesystem
    if part.size % BLOCK_SIZE:
        raise FieldlinkError(f"vfs partition size {part.size:#x} is not a multiple of {BLOCK_SIZE}")
    from littlefs import LittleFSError

    files = filesystem_files(bundle)
    need = sum(len(d) for d in files.values())
    too_big = FieldlinkError(f"the bundle ({need} bytes in {len(files)} files) does not fit the board's vfs "
                             f"partition ({part.size} bytes with LittleFS overhead)", where=str(bundle.root))
    if need > part.size:
        raise too_big
    fs = _lfs(part.size // BLOCK_SIZE)
    try:
        for path, data in sorted(files.items()):
            parent = path.rsplit("/", 1)[0] if "/" in path else ""
            if parent:
                fs.makedirs(parent, exist_ok=True)  # type: ignore[attr-defined]
            with fs.open(path, "wb") as f:  # type: ignore[attr-defined]
                f.write(data)
        fs.unmount()  # type: ignore[attr-defined]
    except LittleFSError as exc:
        if exc.code == LittleFSError.Error.LFS_ERR_NOSPC:
            raise too_big from None
        raise FieldlinkError(f"cannot build the LittleFS image: {exc}", where=str(bundle.root)) from None
    data = bytes(fs.context.buffer)  # type: ignore[attr-defined]
    if len(data) != part.size:
        raise FieldlinkError(f"filesystem image is {len(data)} bytes, partition is {part.size}")
    return data


def read_fs_image(data: bytes) -> dict[str, bytes]:
    """Mount a LittleFS image (our geometry) and return every file: path -> content."""
    from littlefs import LittleFS

    fs = LittleFS(block_size=BLOCK_SIZE, block_count=len(data) // BLOCK_SIZE, read_size=LFS_READ_SIZE,
                  prog_size=LFS_PROG_SIZE, lookahead_size=LFS_LOOKAHEAD, mount=False)
    fs.context.buffer[:] = data  # type: ignore[attr-defined]
    fs.mount()
    out: dict[str, bytes] = {}
    for root, _dirs, files in fs.walk("/"):
        for name in files:
            p = f"{root.rstrip('/')}/{name}".lstrip("/")
            with fs.open(p, "rb") as f:
                out[p] = f.read()
    fs.unmount()
    return out


# ---------------------------------------------------------------------------------------- app images

def _load_esp_image(chip: str, data: bytes, what: str, where: str) -> None:
    """Check an ESP app/bootloader image with esptool's own loader: magic, chip id, checksum, SHA-256."""
    from esptool.bin_image import LoadFirmwareImage

    try:
        img = LoadFirmwareImage(chip, data)
    except Exception as exc:  # esptool raises FatalError, struct.error, RuntimeError...
        raise FieldlinkError(f"{what} is not a valid {chip} image: {exc}", where=where) from exc
    want = img.ROM_LOADER.IMAGE_CHIP_ID
    if getattr(img, "chip_id", want) != want:
        raise FieldlinkError(f"{what} is built for chip id {img.chip_id}, {chip} needs {want}", where=where)
    if img.checksum != img.calculate_checksum():
        raise FieldlinkError(f"{what} checksum is wrong", where=where)
    if getattr(img, "append_digest", False) and img.stored_digest != img.calc_digest:
        raise FieldlinkError(f"{what} SHA-256 digest is wrong", where=where)


def split_merged_firmware(data: bytes) -> tuple[bytes, bytes] | None:
    """(bootloader, app) from a merged MicroPython download, or None if ``data`` is a plain app image."""
    if len(data) <= PARTITION_TABLE_OFFSET + 0xC00 or data[0] != 0xE9:
        return None
    table = data[PARTITION_TABLE_OFFSET:PARTITION_TABLE_OFFSET + parttable.MAX_LENGTH]
    if table[:2] != parttable.MAGIC:
        return None
    entries = parttable.decode(table)
    app = parttable.find(entries, type=0x00, subtype=0x00) or parttable.find(entries, type=0x00, subtype=0x10)
    if app is None or app.offset >= len(data):
        raise FieldlinkError("merged firmware has no factory/ota_0 app in its partition table")
    boot = data[:PARTITION_TABLE_OFFSET].rstrip(b"\xff")
    return boot, data[app.offset:app.offset + app.size].rstrip(b"\xff")


def _chip_name(board: Board) -> str:
    return board.chip  # boards use esptool's names: esp32s3, esp32c6


def build_image(board: Board | str, firmware: Path | str, out: Path | str | None = None, *,
                bundle: Path | str | Bundle | None = None, bootloader: Path | str | None = None,
                progress: Callable[[str], None] | None = None) -> ImageResult:
    """Write one flashable image: bootloader, partition table, firmware (first app partition) and the
    LittleFS filesystem (``vfs``) holding ``bundle`` (built now into build/<board> when not given)."""
    b = load_board(board) if isinstance(board, str) else board
    chip = _chip_name(b)
    fw_path = Path(firmware)
    fw = read_bytes(fw_path, "firmware")
    boot_src = ""
    boot: bytes | None = None
    merged = split_merged_firmware(fw)
    if merged is not None:
        boot, fw = merged
        boot_src = f"{fw_path} [0x0]"
    if bootloader is not None:
        boot = read_bytes(bootloader, "bootloader")
        boot_src = str(bootloader)
    if boot is None:
        raise FieldlinkError("no bootloader: pass --bootloader BOOTLOADER.bin (from the ESP-IDF/MicroPython "
                             "build), or a merged MicroPython firmware download as --firmware")
    _load_esp_image(chip, fw, "firmware", str(fw_path))
    _load_esp_image(chip, boot, "bootloader", boot_src)
    boot_off = BOOTLOADER_OFFSET[chip]
    if boot_off + len(boot) > PARTITION_TABLE_OFFSET:
        raise FieldlinkError(f"bootloader is {len(boot)} bytes and overlaps the partition table", where=boot_src)
    apps = b.app_partitions
    if not apps:
        raise FieldlinkError("board has no app partition", where=str(b.path))
    app = apps[0]
    if len(fw) > app.size:
        raise FieldlinkError(f"firmware is {len(fw)} bytes, app partition {app.name!r} holds {app.size}",
                             where=str(fw_path))
    if progress:
        progress("bundle")
    if isinstance(bundle, Bundle):
        bun = bundle
    elif bundle is not None:
        bun = load_bundle(bundle)
    else:
        bun = build_bundle(b)
    if bun.board != b.name:
        raise FieldlinkError(f"bundle is for board {bun.board!r}, not {b.name!r}", where=str(bun.root))
    if progress:
        progress("filesystem")
    table = parttable.encode(b.partitions)
    fs = build_fs_image(b, bun)
    vfs = b.filesystem
    regions = (
        Region("bootloader", boot_off, len(boot), boot_src),
        Region("partitions", PARTITION_TABLE_OFFSET, len(table), f"{b.path.name} ({len(b.partitions)} entries)"),
        Region("firmware", app.offset, len(fw), f"{fw_path} -> {app.name}"),
        Region("filesystem", vfs.offset, len(fs), f"{bun.root} -> vfs (LittleFS v2)"),
    )
    out_path = Path(out) if out is not None else Path("build") / f"{b.name}-image.bin"
    if out is None:
        with user_errors(out_path.parent, "cannot create the output directory"):
            out_path.parent.mkdir(parents=True, exist_ok=True)
    check_output(out_path, "image")
    if progress:
        progress("merge")
    merge(chip, [(r.offset, blob) for r, blob in zip(regions, (boot, table, fw, fs), strict=True)], out_path,
          flash_size=FLASH_SIZE_NAMES.get(b.flash_size, "keep"))
    return ImageResult(out_path, out_path.stat().st_size, regions)


def merge(chip: str, parts: list[tuple[int, bytes]], out: Path, flash_size: str = "keep") -> None:
    """esptool merge-bin (raw format; gaps filled with 0xFF). The bootloader header's flash size is
    set to the board's (esptool patches the bootloader at its offset)."""
    import esptool.cmds

    ordered = sorted(parts)
    for (o1, d1), (o2, _) in zip(ordered, ordered[1:], strict=False):
        if o1 + len(d1) > o2:
            raise FieldlinkError(f"regions overlap: {o1:#x}+{len(d1):#x} > {o2:#x}")
    check_output(out, "image")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # esptool prints hints; we print the layout
            esptool.cmds.merge_bin([(o, d) for o, d in ordered], chip, output=str(out), flash_size=flash_size)
    except OSError as exc:
        raise from_os_error(exc, out, "cannot write image") from None
    except Exception as exc:
        raise FieldlinkError(f"esptool merge-bin failed: {exc}") from exc
