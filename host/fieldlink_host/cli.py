"""The ``fieldlink`` command line. Each subcommand lives in ``fieldlink_host.commands.<name>`` and
exposes ``register(subparsers)``; the handler calls a library function and returns an exit code.
User errors (:class:`FieldlinkError`) are printed as one line, without a traceback."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from typing import NoReturn

from fieldlink_host import __version__, commands
from fieldlink_host.errors import FieldlinkError, Terminated
from fieldlink_host.fsio import from_os_error

EPILOG = """examples:
  fieldlink sim --seconds 10          run a virtual farm (gateway + nodes) for 10 s
  fieldlink boards                    list the board definitions
  fieldlink <command> --help          help and examples for one command
"""


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line too (``fieldlink: error: fieldlink rules: ...``), like every other error;
    subparsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"fieldlink: error: {self.prog}: {message} (see {self.prog} --help)\n")


def _one_line(text: str) -> str:
    return "; ".join(part.strip() for part in text.splitlines() if part.strip()) or "error"


def report(exc: BaseException) -> str:
    """The one line printed for an error that reached the CLI."""
    if isinstance(exc, FieldlinkError):
        return f"fieldlink: error: {_one_line(str(exc))}"
    if isinstance(exc, OSError):  # backstop: library code should already have said which file and why
        return f"fieldlink: error: {_one_line(str(from_os_error(exc)))}"
    if isinstance(exc, RecursionError):
        return "fieldlink: error: input nested too deeply"
    return f"fieldlink: error: {_one_line(str(exc))}"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    args = parser.parse_args(argv)  # usage errors: one line (``_Parser.error``) and SystemExit(2)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except (FieldlinkError, OSError, RecursionError) as exc:
        print(report(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        if isinstance(exc, Terminated):
            print("fieldlink: terminated", file=sys.stderr)
            return 143
        print("fieldlink: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
