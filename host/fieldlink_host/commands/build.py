"""`fieldlink build`: cross-compile the device package (+ app, rules, natmods, board config) into a bundle."""

from __future__ import annotations

import argparse
from pathlib import Path

from fieldlink_host.boards import load_board
from fieldlink_host.build import build_bundle
from fieldlink_host.progress import Progress

EXAMPLES = """examples:
  fieldlink build --board esp32-s3-devkitc-1                    bundle into build/esp32-s3-devkitc-1/
  fieldlink build --board sim-node --app myapp --out build/sim   add the app in ./myapp (main.py, ...)
  fieldlink build --board esp32-c6-devkitc-1 --rules rules.bin -O2
  fieldlink build --board sim-node --rules examples/greenhouse.rules.yaml --arch x64   for the virtual board
  fieldlink build --board esp32-c6-devkitc-1 --owner-key keys/owner.pub   devices trust keys/owner.pub
The bundle holds .mpy files for the board's architecture (xtensawin or rv32imc), board.json and
manifest.json (file list, sizes, sha256, board, version, git revision, mpy-cross version).
Without an app main.py a generated main module starts fieldlink.main.run() (the board's role).
Only the modules the board's role imports are bundled: the import graph of fieldlink.main,
fieldlink.ROLE.start and the app's modules, read from the source (docs/deploy.md "Per-role bundles").
YAML rules (NAME.yaml, NAME.rules.yaml) are compiled for the board into rules/NAME.bin; .bin programs
are verified and copied; the node runs the first rules/*.bin by name.
Native modules: ARCH/*.mpy from --natmods, else native/natmod/dist/ARCH/ of a source checkout when
`make -C native/natmod ARCH=rv32imc` (or xtensawin) built one; the device then runs framing and the
rules VM in C (docs/native.md). --no-natmods leaves them out.
Building twice from the same sources gives byte-identical output.

CircuitPython boards (runtime = "circuitpython" in the board file; docs/circuitpython.md):
  fieldlink build --board adafruit-feather-esp32s3 --runtime circuitpython      CIRCUITPY tree in build/BOARD/
  fieldlink build --board adafruit-feather-esp32s3 --mpy-cross ~/cp9/mpy-cross   .mpy for CircuitPython 9.x
The tree holds code.py, lib/fieldlink/, board.json, rules/ and manifest.json; without CircuitPython's own
mpy-cross (--mpy-cross or $CIRCUITPY_MPY_CROSS) the modules ship as .py.
"""


def _run(args: argparse.Namespace) -> int:
    bar: Progress | None = None

    def progress(done: int, total: int, name: str) -> None:
        nonlocal bar
        if bar is None:
            bar = Progress("build", total, unit="files")
        bar.update(done, name)

    board = load_board(args.board)
    runtime = args.runtime or board.runtime
    if runtime != board.runtime:
        from fieldlink_host.errors import FieldlinkError

        raise FieldlinkError(f"board {board.name} runs {board.runtime}, not {runtime}", where=str(board.path))
    if runtime == "circuitpython":
        from fieldlink_host.circuitpy import build_tree

        try:
            tree = build_tree(board, args.out or Path("build") / board.name, app_dir=args.app,
                              rules=args.rules or (), mpy_cross=args.mpy_cross, version=args.version,
                              progress=progress)
        finally:
            if bar is not None:
                bar.close()
        m = tree.manifest
        print(f"{tree.root}: CIRCUITPY tree, {len(m['files'])} files + code.py, {m['total_size']} bytes, board "
              f"{m['board']} (CircuitPython {m['circuitpython']}.x, {m['mpy'] or '.py sources'}), "
              f"version {m['version']}")
        return 0
    if args.mpy_cross:
        from fieldlink_host.errors import FieldlinkError

        raise FieldlinkError("--mpy-cross is for CircuitPython trees (MicroPython uses $MPY_CROSS)")
    try:
        bundle = build_bundle(args.board, args.out, app_dir=args.app, rules=args.rules or (),
                              natmod_dir=args.natmods, opt_level=args.opt, version=args.version, arch=args.arch,
                              owner_keys=args.owner_key or (), default_natmods=not args.no_natmods,
                              progress=progress)
    finally:
        if bar is not None:
            bar.close()
    m = bundle.manifest
    role = load_board(args.board).role
    print(f"{bundle.root}: {len(m['files'])} files, {m['total_size']} bytes, board {m['board']} "
          f"({m['arch']}), {role} role, version {m['version']}, revision {m['source_revision']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("build", help="build an app bundle (.mpy) for a board",
                       description="Cross-compile the device package, the app and the board config into a "
                                   "bundle directory with a manifest.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", "-b", required=True, help="board name (boards/NAME.toml) or board file")
    p.add_argument("--out", "-o", type=Path, help="output directory (default build/BOARD)")
    p.add_argument("--app", type=Path, help="user app directory (main.py and modules) to include")
    p.add_argument("--rules", type=Path, action="append", metavar="FILE",
                   help="rules to include (repeatable): YAML is compiled for the board into rules/NAME.bin, "
                        "a compiled .bin is verified and copied")
    p.add_argument("--natmods", type=Path,
                   help="directory with ARCH/*.mpy native modules (default: native/natmod/dist of a source "
                        "checkout, where `make -C native/natmod ARCH=...` puts them, if built for the board)")
    p.add_argument("--no-natmods", action="store_true", help="bundle no native module")
    p.add_argument("-O", "--opt", type=int, default=0, choices=range(4), metavar="N",
                   help="mpy-cross optimisation level 0..3 (default 0)")
    p.add_argument("--arch", help="override the board's mpy arch (e.g. x64 for native code on the virtual board)")
    p.add_argument("--version", help="version to record (default: fieldlink.VERSION)")
    p.add_argument("--runtime", choices=("micropython", "circuitpython"),
                   help="runtime to build for (default: the board's; circuitpython builds a CIRCUITPY tree)")
    p.add_argument("--mpy-cross", metavar="PATH",
                   help="CircuitPython's mpy-cross for the board's CircuitPython version (else .py files)")
    p.add_argument("--owner-key", type=Path, action="append", metavar="PUB",
                   help="owner public key the device trusts for signed OTA updates from its first boot "
                        "(repeatable; owner_keys.json, docs/ota.md)")
    p.set_defaults(func=_run)
