"""`fieldlink ota`: signed over-the-air updates (docs/ota.md). Subcommands: make, inspect (push: the
rollout engine registers itself here as another subcommand)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fieldlink_host.errors import FieldlinkError
from fieldlink_host.ota.package import inspect_package, make_package
from fieldlink_host.signing import KINDS

EXAMPLES = """examples:
  fieldlink ota make build/esp32-c6-devkitc-1 --key keys/owner.key
        app update: build/esp32-c6-devkitc-1.ota.json, .ota.sig, .ota.bin
  fieldlink ota make fw.bin --kind firmware --board esp32-c6-devkitc-1 --version 1.24.1 --key keys/owner.key
  fieldlink ota make greenhouse.bin --kind rules --board sim-node --version r7 --key keys/owner.key
  fieldlink ota make keys/next.pub --kind keys --board sim-node --version k2 --key keys/owner.key
        key rotation: devices trust only keys/next.pub afterwards (owner.key is retired)
  fieldlink ota inspect build/esp32-c6-devkitc-1 --pub keys/owner.pub [--json]
"""


def _make(args: argparse.Namespace) -> int:
    pkg = make_package(args.target, args.key, kind=args.kind, board=args.board, version=args.version,
                       counter=args.counter, out=args.out, keys=args.add_key or [])
    m = pkg.manifest
    print(f"{m['kind']} update for {m['board']}: version {m['version']}, counter {m['counter']}, "
          f"{m['stream_size']} bytes, key {m['key_id']}")
    for p in (pkg.manifest_path, pkg.signature_path, pkg.stream_path):
        print(f"  {p}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    r = inspect_package(args.package, args.pub)
    if args.json:
        print(json.dumps(r, sort_keys=True))
        return 0 if r["ok"] else 1
    m = r["manifest"]
    print(f"{r['package']}: {m.get('kind')} update for {m.get('board')}")
    for k in ("version", "counter", "key_id", "size", "sha256", "stream_size", "mpy", "payload"):
        if k in m:
            print(f"  {k:12} {m[k]}")
    print(f"  {'signature':12} {r['signature']}")
    for f in r["files"]:
        if "path" in f:
            print(f"    {'ok ' if f['ok'] else 'BAD'} {f['size']:8d}  {f['path']}")
        else:
            print(f"    key {f['key_id']}  {f['public']}")
    if r["problems"]:
        for p in r["problems"]:
            print(f"  problem: {p}")
        raise FieldlinkError(f"{len(r['problems'])} problem(s): {r['problems'][0]}", where=r["package"])
    print("  ok")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("ota", help="make, inspect (and push) signed OTA updates",
                       description="Signed over-the-air updates: app bundles, firmware, rules programs, keys.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    osub = p.add_subparsers(dest="ota_command", metavar="SUBCOMMAND")
    m = osub.add_parser("make", help="sign an update and write its package (.ota.json, .ota.sig, .ota.bin)",
                        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("target", type=Path, nargs="?", metavar="BUNDLE|FILE",
                   help="bundle directory (app), firmware image, rules program, or public key (keys)")
    m.add_argument("--key", "-k", type=Path, required=True, help="owner private key")
    m.add_argument("--kind", choices=KINDS, help="update kind (default app for a bundle)")
    m.add_argument("--board", help="target board (required unless a bundle)")
    m.add_argument("--version", help="version (default: the bundle's)")
    m.add_argument("--counter", type=int, help="anti-downgrade counter (default: last used with the key + 1)")
    m.add_argument("--add-key", type=Path, action="append", metavar="PUB",
                   help="keys update: another public key to trust (repeatable)")
    m.add_argument("--out", "-o", type=Path, help="package base path (default: next to the target)")
    m.set_defaults(func=_make)
    i = osub.add_parser("inspect", help="show and check an update package",
                        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    i.add_argument("package", type=Path, metavar="PACKAGE", help="package base path or any of its files")
    i.add_argument("--pub", "-p", type=Path, help="also check the signature with this public key")
    i.add_argument("--json", action="store_true", help="print one JSON object")
    i.set_defaults(func=_inspect)

    def _help(args: argparse.Namespace) -> int:
        p.print_help()
        return 2
    p.set_defaults(func=_help)
