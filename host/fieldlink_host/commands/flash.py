"""`fieldlink flash`: write a merged image to a board with esptool."""

from __future__ import annotations

import argparse
from pathlib import Path

from fieldlink_host.flash import ESPTOOL_CHIPS, flash, plan_flash

EXAMPLES = """examples:
  fieldlink flash --port /dev/ttyACM0 --image build/esp32-s3-devkitc-1-image.bin
  fieldlink flash --port /dev/ttyUSB0 --image c6.bin --board esp32-c6-devkitc-1 --baud 460800
  fieldlink flash --port /dev/ttyACM0 --image img.bin --dry-run      print the esptool command only
The chip is auto-detected by esptool unless --board/--chip names it; the baud rate is chosen from the
USB bridge (see `fieldlink ports`). Native USB boards: hold BOOT while plugging in if the reset fails.
"""


def _run(args: argparse.Namespace) -> int:
    kw = dict(chip=args.chip, board=args.board, baud=args.baud, erase=args.erase, no_reset=args.no_reset)
    if args.dry_run:
        plan = plan_flash(args.port, args.image, **kw)  # type: ignore[arg-type]
        print(" ".join(plan.argv))
        return 0
    flash(args.port, args.image, **kw)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("flash", help="flash a merged image with esptool",
                       description="Flash a merged image (from `fieldlink image`) at 0x0 with esptool.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", "-p", required=True, help="serial port")
    p.add_argument("--image", "-i", type=Path, required=True, help="merged image file")
    p.add_argument("--board", "-b", help="board (sets the chip)")
    p.add_argument("--chip", choices=[*ESPTOOL_CHIPS, "auto"], help="chip (default: auto-detect)")
    p.add_argument("--baud", type=int, help="baud rate (default: chosen from the USB bridge)")
    p.add_argument("--erase", action="store_true", help="erase the whole flash first")
    p.add_argument("--no-reset", action="store_true", help="board already in download mode; do not reset")
    p.add_argument("--dry-run", action="store_true", help="print the esptool command and exit")
    p.set_defaults(func=_run)
