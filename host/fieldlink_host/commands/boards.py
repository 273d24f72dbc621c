"""`fieldlink boards`: list board definitions; `fieldlink boards check FILE`: validate one."""

from __future__ import annotations

import argparse

from fieldlink_host.boards import list_boards, load_board_file
from fieldlink_host.errors import FieldlinkError

EXAMPLES = """examples:
  fieldlink boards                          list the shipped boards
  fieldlink boards check boards/my.toml     validate a board file (file, key and reason on error)
  fieldlink boards show sim-node            print the compact JSON a device receives
"""


def _run(args: argparse.Namespace) -> int:
    if args.action == "check":
        if not args.file:
            raise FieldlinkError("boards check needs FILE")
        board = load_board_file(args.file)
        print(f"{args.file}: ok ({board.name}, {board.chip}, {board.role}, "
              f"{len(board.relays)} relays, {len(board.sensors)} sensors)")
        return 0
    if args.action == "show":
        from fieldlink_host.boards import load_board

        if not args.file:
            raise FieldlinkError("boards show needs a board name or FILE")
        print(load_board(args.file).device_json().decode())
        return 0
    for b in list_boards():
        print(f"{b.name:22} {b.chip:8} {b.role:8} {len(b.relays)} relays  {b.description}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "boards",
        help="list or validate board definitions",
        description="List the board definitions or validate one board TOML file.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", nargs="?", choices=["list", "check", "show"], default="list")
    p.add_argument("file", nargs="?", help="board file (check) or board name/file (show)")
    p.set_defaults(func=_run)
