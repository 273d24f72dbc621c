"""`fieldlink deploy`: copy a bundle to a board (mpremote: only changed files; ampy: full copy)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fieldlink_host.deploy import EXCHANGE_TIMEOUT, VIAS, deploy
from fieldlink_host.progress import Progress

EXAMPLES = """examples:
  fieldlink deploy --port /dev/ttyACM0 --board esp32-s3-devkitc-1     build, then copy what changed
  fieldlink deploy --port /dev/ttyACM0 --bundle build/esp32-s3-devkitc-1 --no-reset
  fieldlink deploy --port /dev/ttyUSB0 --bundle build/sim --via ampy   full copy with ampy
The bundle goes to the inactive app slot (fl/a or fl/b); one rename of fl/active switches to it, so an
interrupted deploy leaves the previous app bootable. Then the board soft-resets (unless --no-reset).

CircuitPython boards: copy a CIRCUITPY tree to the mounted drive (docs/circuitpython.md):
  fieldlink deploy --drive /media/$USER/CIRCUITPY --board adafruit-feather-esp32s3   build, then copy
  fieldlink deploy --drive /media/$USER/CIRCUITPY --bundle build/adafruit-feather-esp32s3
Only changed files are written, into the app directory code.py does not start (fl/a or fl/b); code.py
is replaced last. Files fieldlink did not write are never deleted; a foreign code.py needs --force.
"""


def _run(args: argparse.Namespace) -> int:
    bar: Progress | None = None

    def progress(done: int, total: int, name: str) -> None:
        nonlocal bar
        if bar is None:
            bar = Progress("deploy", total, unit="bytes")
        bar.update(done, name)

    if (args.port is None) == (args.drive is None):
        from fieldlink_host.errors import FieldlinkError

        raise FieldlinkError("deploy needs exactly one of --port (MicroPython) or --drive (CircuitPython)")
    if args.drive is not None:
        from fieldlink_host.circuitpy import build_tree, deploy_drive, load_tree

        if args.bundle is not None:
            tree = load_tree(args.bundle)
        elif args.board is not None:
            from fieldlink_host.boards import load_board

            b = load_board(args.board)
            tree = build_tree(b, Path("build") / b.name)
        else:
            from fieldlink_host.errors import FieldlinkError

            raise FieldlinkError("deploy needs --bundle DIR or --board BOARD")
        fbar: Progress | None = None

        def fprogress(done: int, total: int, name: str) -> None:
            nonlocal fbar
            if fbar is None:
                fbar = Progress("deploy", total, unit="files")
            fbar.update(done, name)

        try:
            dres = deploy_drive(args.drive, tree, force=args.force, progress=fprogress)
        finally:
            if fbar is not None:
                fbar.close()
        print(dres.summary())
        return 0
    try:
        res = deploy(args.port, args.bundle, via=args.via, board=args.board, reset=not args.no_reset,
                     force=args.force, baud=args.baud, progress=progress, timeout=args.timeout,
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
    p.add_argument("--port", "-p", help="serial port (/dev/ttyACM0, or a virtual board's /dev/pts/N)")
    p.add_argument("--drive", type=Path, help="mounted CIRCUITPY drive (CircuitPython boards) instead of --port")
    p.add_argument("--bundle", type=Path, help="bundle (or CIRCUITPY tree) directory (default: build it for --board)")
    p.add_argument("--board", "-b", help="board name; builds the bundle when --bundle is not given")
    p.add_argument("--via", choices=VIAS, default="mpremote", help="transfer tool (default mpremote)")
    p.add_argument("--no-reset", action="store_true", help="do not soft-reset the board afterwards")
    p.add_argument("--force", action="store_true", help="replace an app built for another board")
    p.add_argument("--owner-key", type=Path, action="append", metavar="PUB",
                   help="with --board: build the bundle with this owner public key (signed OTA trust)")
    p.add_argument("--baud", type=int, default=115200, help="baud rate for UART bridges (default 115200)")
    p.add_argument("--timeout", type=float, default=EXCHANGE_TIMEOUT, metavar="S",
                   help=f"give up when one serial exchange gets no valid answer for S seconds "
                        f"(default {EXCHANGE_TIMEOUT:g})")
    p.set_defaults(func=_run)
