"""`fieldlink rules compile|check|simulate|disasm`: the rules compiler and simulator (docs/rules.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fieldlink_host.errors import FieldlinkError
from fieldlink_host.fsio import read_bytes, read_text, write_bytes, write_text

EXAMPLES = """examples:
  fieldlink rules check examples/greenhouse.rules.yaml --board sim-node
  fieldlink rules compile examples/greenhouse.rules.yaml -o greenhouse.rules.bin --listing
  fieldlink rules simulate examples/greenhouse.rules.yaml --csv data.csv --start 06:00 --html report.html
  fieldlink rules disasm greenhouse.rules.bin
"""


def _program(path: str, board: str | None) -> bytes:
    from fieldlink_host.rules.compiler import compile_file

    p = Path(path)
    if p.suffix == ".bin":
        return read_bytes(p, "program", limit=1 << 16)
    return compile_file(p, board).program


def _run(args: argparse.Namespace) -> int:
    from fieldlink_host.rules.compiler import compile_file, disassemble

    if args.action == "check":
        c = compile_file(args.file, args.board)
        print(f"{args.file}: ok ({len(c.rule_order)} rules, {len(c.inputs)} inputs, {len(c.program)} bytes)")
        return 0
    if args.action == "compile":
        c = compile_file(args.file, args.board)
        out = Path(args.output or Path(args.file).with_suffix("").with_suffix(".rules.bin"))
        write_bytes(out, c.program, "program")
        if args.listing:
            print("\n".join(c.listing))
        print(f"{out}: {len(c.program)} bytes, {len(c.rule_order)} rules", file=sys.stderr)
        return 0
    if args.action == "disasm":
        from fieldlink.rules.verify import VerifyError

        try:
            print("\n".join(disassemble(_program(args.file, args.board))))
        except VerifyError as exc:
            raise FieldlinkError(f"program rejected by the verifier: {exc}", where=args.file) from None
        return 0
    from fieldlink_host.rules.simulate import html_report, simulate_csv

    if not args.csv:
        raise FieldlinkError("simulate needs --csv DATA.csv")
    prog = _program(args.file, args.board)
    log = simulate_csv(prog, args.csv, args.start)
    text = "".join(log)
    if args.output:
        write_text(args.output, text, "action log")
    else:
        sys.stdout.write(text)
    if args.html:
        lines = read_text(args.csv, "CSV").splitlines()
        write_text(args.html, html_report(f"{args.file} on {args.csv}", lines, log), "HTML report")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "rules",
        help="compile, check, simulate rule programs",
        description="Compile YAML rules to verified bytecode, check them against a board, replay a CSV of "
                    "readings through the device VM, or disassemble a program.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=["compile", "check", "simulate", "disasm"])
    p.add_argument("file", help="rules YAML (or a compiled .bin for simulate/disasm)")
    p.add_argument("--board", "-b", help="board name or TOML file (default: the file's 'board:' key)")
    p.add_argument("-o", "--output", help="compile: output program; simulate: write the action log here")
    p.add_argument("--listing", action="store_true", help="compile: print the disassembly")
    p.add_argument("--csv", help="simulate: CSV of timestamped readings")
    p.add_argument("--start", help="simulate: time of day of the first row (HH:MM[:SS])")
    p.add_argument("--html", help="simulate: also write an HTML page with charts and actions")
    p.set_defaults(func=_run)
