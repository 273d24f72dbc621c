"""The ``fieldlink`` command line. Each subcommand lives in ``fieldlink_host.commands.<name>`` and
exposes ``register(subparsers)``; the handler calls a library function and returns an exit code.
User errors (:class:`FieldlinkError`) are printed as one line, without a traceback."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from fieldlink_host import __version__, commands
from fieldlink_host.errors import FieldlinkError

EPILOG = """examples:
  fieldlink sim --seconds 10          run a virtual farm (gateway + nodes) for 10 s
  fieldlink boards                    list the board definitions
  fieldlink <command> --help          help and examples for one command
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fieldlink",
        description="fieldlink: build, sign, deploy, simulate and bridge ESP-NOW sensor/relay fleets.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fieldlink {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except FieldlinkError as exc:
        print(f"fieldlink: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
