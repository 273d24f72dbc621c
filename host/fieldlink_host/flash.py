"""Flash a merged image with esptool (write-flash at 0x0), choosing chip and baud rate."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from fieldlink_host import parttable
from fieldlink_host.boards import PARTITION_TABLE_OFFSET, load_board
from fieldlink_host.errors import FieldlinkError
from fieldlink_host.ports import guess_board, port_info

ESPTOOL_CHIPS = ("esp32s3", "esp32c6")


@dataclass(frozen=True)
class FlashPlan:
    argv: list[str]
    chip: str
    baud: int
    image: Path


def check_image(image: Path) -> None:
    """A merged image: an ESP image header at 0x0 and a valid partition table at 0x8000."""
    try:
        with open(image, "rb") as f:
            head = f.read(PARTITION_TABLE_OFFSET + parttable.MAX_LENGTH)
    except OSError as exc:
        raise FieldlinkError(f"cannot read image: {exc.strerror}", where=str(image)) from exc
    if not head or head[0] != 0xE9:
        raise FieldlinkError("not a merged flash image (no ESP image header at 0x0)", where=str(image))
    if len(head) < PARTITION_TABLE_OFFSET + 32:
        raise FieldlinkError("image ends before the partition table at 0x8000", where=str(image))
    try:
        entries = parttable.decode(head[PARTITION_TABLE_OFFSET:])
    except FieldlinkError as exc:
        raise FieldlinkError(f"bad partition table at 0x8000: {exc}", where=str(image)) from exc
    if not entries:
        raise FieldlinkError("no partition table at 0x8000", where=str(image))


def plan_flash(port: str, image: Path | str, *, chip: str | None = None, board: str | None = None,
               baud: int | None = None, erase: bool = False, no_reset: bool = False,
               connect_attempts: int | None = None) -> FlashPlan:
    """The esptool command line for flashing ``image`` (a ``fieldlink image`` output) at 0x0.

    chip: from ``board``, else ``chip``, else esptool's auto-detection. baud: given, else from the USB
    bridge on ``port`` (fieldlink_host.ports), else 460800.
    """
    img = Path(image)
    check_image(img)
    if board is not None:
        b = load_board(board)
        if chip is not None and chip != b.chip:
            raise FieldlinkError(f"--chip {chip} contradicts board {b.name} ({b.chip})")
        chip = b.chip
    if chip is not None and chip not in (*ESPTOOL_CHIPS, "auto"):
        raise FieldlinkError(f"unsupported chip {chip!r} (supported: {', '.join(ESPTOOL_CHIPS)}, auto)")
    if baud is None:
        info = port_info(port)
        if info is not None:
            baud = info.baud
        else:
            baud = guess_board(None, None)[1] if port.startswith("/dev/pts/") else 460800
    argv = [sys.executable, "-m", "esptool", "--chip", chip or "auto", "--port", port, "--baud", str(baud)]
    if no_reset:
        argv += ["--before", "no-reset", "--after", "no-reset"]
    else:
        argv += ["--before", "default-reset", "--after", "hard-reset"]
    if connect_attempts is not None:
        argv += ["--connect-attempts", str(connect_attempts)]
    argv += ["write-flash", "--compress"]
    if erase:
        argv.append("--erase-all")
    argv += ["0x0", str(img)]
    return FlashPlan(argv, chip or "auto", baud, img)


def flash(port: str, image: Path | str, **kw: object) -> int:
    """Run esptool (its own progress output goes to the terminal); raise FieldlinkError on failure."""
    plan = plan_flash(port, image, **kw)  # type: ignore[arg-type]
    try:
        rc = subprocess.call(plan.argv)
    except OSError as exc:
        raise FieldlinkError(f"cannot run esptool: {exc}") from exc
    if rc != 0:
        raise FieldlinkError(f"esptool failed (exit {rc}); command: {' '.join(plan.argv[2:])}")
    return rc
