"""`fieldlink image`: one flashable image (bootloader + partition table + firmware + LittleFS with the bundle)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fieldlink_host.image import build_image

EXAMPLES = """examples:
  fieldlink image --board esp32-s3-devkitc-1 --firmware ESP32_GENERIC_S3-v1.29.0.bin
        merged MicroPython download: its bootloader is reused; writes build/esp32-s3-devkitc-1-image.bin
  fieldlink image --board esp32-c6-devkitc-1 --firmware micropython.bin --bootloader bootloader.bin \\
        --bundle build/esp32-c6-devkitc-1 --out c6.bin
Then: fieldlink flash --port /dev/ttyACM0 --image c6.bin
The layout (offset, end, size of each region) is printed; docs/deploy.md explains it.
"""


def _run(args: argparse.Namespace) -> int:
    def step(name: str) -> None:
        if sys.stderr.isatty():
            print(f"image: {name}...", file=sys.stderr)

    res = build_image(args.board, args.firmware, args.out, bundle=args.bundle, bootloader=args.bootloader,
                      progress=step)
    print(res.layout())
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("image", help="build a flashable image with firmware and filesystem",
                       description="Build the board's LittleFS image holding the bundle and merge bootloader, "
                                   "partition table, MicroPython firmware and filesystem into one image.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", "-b", required=True, help="board name or board file")
    p.add_argument("--firmware", "-f", type=Path, required=True,
                   help="MicroPython firmware: app image, or the merged download")
    p.add_argument("--bootloader", type=Path, help="second-stage bootloader image (default: from a merged --firmware)")
    p.add_argument("--bundle", type=Path, help="bundle directory (default: build it now into build/BOARD)")
    p.add_argument("--out", "-o", type=Path, help="output file (default build/BOARD-image.bin)")
    p.set_defaults(func=_run)
