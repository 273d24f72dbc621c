"""`fieldlink deploy`: copy a bundle to a board (mpremote: only changed files; ampy: full copy)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fieldlink_host.deploy import VIAS, deploy
from fieldlink_host.progress import Progress

EXAMPLES = """examples:
  fieldlink deploy --port /dev/ttyACM0 --board esp32-s3-devkitc-1     build, then copy what changed
  fieldlink deploy --port /dev/ttyACM0 --bundle build/esp32-s3-devkitc-1 --no-reset
  fieldlink deploy --port /dev/ttyUSB0 --bundle build/sim --via ampy   full copy with ampy
The bundle goes to the inactive app slot (fl/a or fl/b); one rename of fl/active switches to it, so an
interrupted deploy leaves the previous app bootable. Then the board soft-resets (unless --no-reset).
"""


def _run(args: argparse.Namespace) -> int:
    bar: Progress | None = None

    def progress(done: int, total: int, name: str) -> None:
        nonlocal bar
        if bar is None:
            bar = Progress("deploy", total, unit="bytes")
        bar.update(done, name)

    try:
        res = deploy(args.port, args.bundle, via=args.via, board=args.board, reset=not args.no_reset,
                     force=args.force, baud=args.baud, progress=progress,
                     owner_keys=args.owner_key)
    finally:
        if bar is not None:
            bar.close()
    print(res.summary())
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("deploy", help="copy a bundle to a board over its serial REPL",
                       description="Copy a bundle into the board's inactive app slot and switch to it atomically.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", "-p", required=True, help="serial port (/dev/ttyACM0, or a virtual board's /dev/pts/N)")
    p.add_argument("--bundle", type=Path, help="bundle directory (default: build it for --board)")
    p.add_argument("--board", "-b", help="board name; builds the bundle when --bundle is not given")
    p.add_argument("--via", choices=VIAS, default="mpremote", help="transfer tool (default mpremote)")
    p.add_argument("--no-reset", action="store_true", help="do not soft-reset the board afterwards")
    p.add_argument("--force", action="store_true", help="replace an app built for another board")
    p.add_argument("--owner-key", type=Path, action="append", metavar="PUB",
                   help="with --board: build the bundle with this owner public key (signed OTA trust)")
    p.add_argument("--baud", type=int, default=115200, help="baud rate for UART bridges (default 115200)")
    p.set_defaults(func=_run)
