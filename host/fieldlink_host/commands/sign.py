"""`fieldlink sign`: sign a bundle (or a firmware/rules/keys file) with an Ed25519 key."""

from __future__ import annotations

import argparse
from pathlib import Path

from fieldlink_host.signing import KINDS, sign

EXAMPLES = """examples:
  fieldlink sign build/esp32-s3-devkitc-1 --key keys/fieldlink.key
        writes build/esp32-s3-devkitc-1/ota.json and ota.sig (kind app)
  fieldlink sign fw.bin --key keys/fieldlink.key --kind firmware --board esp32-c6-devkitc-1 --version 1.29.0
        writes fw.bin.ota.json and fw.bin.ota.sig
The counter defaults to one more than the last one used with the key (KEY.counter).
Format: docs/ota.md.
"""


def _run(args: argparse.Namespace) -> int:
    s = sign(args.target, args.key, kind=args.kind, board=args.board, version=args.version, counter=args.counter)
    m = s.manifest
    print(f"signed {args.target}: kind {m['kind']}, board {m['board']}, version {m['version']}, "
          f"counter {m['counter']}, key {m['key_id']}")
    print(f"  {s.manifest_path}\n  {s.signature_path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sign", help="sign a bundle or payload file (Ed25519)",
                       description="Write a signed OTA manifest (and its signature) for a bundle or a file.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", type=Path, metavar="BUNDLE", help="bundle directory or payload file")
    p.add_argument("--key", "-k", type=Path, required=True, help="private key file")
    p.add_argument("--kind", choices=KINDS, help="payload kind (default app for a bundle)")
    p.add_argument("--board", help="target board (required for a payload file)")
    p.add_argument("--version", help="version (default: the bundle's)")
    p.add_argument("--counter", type=int, help="anti-downgrade counter (default: last + 1)")
    p.set_defaults(func=_run)
