"""`fieldlink board`: run a virtual board (MicroPython unix port) on a pseudo-terminal."""

from __future__ import annotations

import argparse
from pathlib import Path

from fieldlink_host.ptyboard import run_board

EXAMPLES = """examples:
  fieldlink board --dir vboard --port-file vboard.port &
  mpremote connect $(cat vboard.port) fs ls               unmodified mpremote (or ampy) works against it
  fieldlink deploy --port $(cat vboard.port) --board sim-node
--dir is the board directory; the board's filesystem is its own flash, DIR/flash/vfs.bin (LittleFS2
mounted at / like the ESP32 port; read it with littlefs-python or fieldlink_host.virtual.BoardFlash).
Nothing outside the board is reachable from it. Ctrl-D / machine.reset() restart the interpreter like
the firmware does (MPY: soft reboot, boot.py, main.py, banner). Stop it with Ctrl-C or SIGTERM.
"""


def _run(args: argparse.Namespace) -> int:
    run_board(args.dir, port_file=args.port_file, board=args.board, micropython=args.micropython)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("board", help="run a virtual board on a pseudo-terminal",
                       description="Run a virtual MicroPython board on a pseudo-terminal (for mpremote, ampy, "
                                   "deploy and monitor without hardware).",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, default=Path("vboard"), help="the board directory; its flash (filesystem) is DIR/flash (default ./vboard)")
    p.add_argument("--port-file", type=Path, help="write the pseudo-terminal path here once ready")
    p.add_argument("--board", help="board definition to impersonate (name for the banner, chip)")
    p.add_argument("--micropython", default="micropython", help="MicroPython unix binary (default: micropython)")
    p.set_defaults(func=_run)
