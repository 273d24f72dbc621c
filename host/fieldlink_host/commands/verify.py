"""`fieldlink verify`: check a signed bundle or payload file against a public key."""

from __future__ import annotations

import argparse
from pathlib import Path

from fieldlink_host.signing import verify

EXAMPLES = """examples:
  fieldlink verify build/esp32-s3-devkitc-1 --pub keys/fieldlink.pub
  fieldlink verify fw.bin --pub keys/fieldlink.pub --board esp32-c6-devkitc-1
Exit status 0 when the signature, the manifest and every file check out; 1 with the reason otherwise.
"""


def _run(args: argparse.Namespace) -> int:
    m = verify(args.target, args.pub, board=args.board, min_counter=args.min_counter)
    print(f"ok: {args.target}: kind {m['kind']}, board {m['board']}, version {m['version']}, "
          f"counter {m['counter']}, {m['size']} bytes, key {m['key_id']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("verify", help="verify a signed bundle or payload file",
                       description="Verify the Ed25519 signature, the signed manifest and the payload.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", type=Path, metavar="BUNDLE", help="bundle directory or payload file")
    p.add_argument("--pub", "-p", type=Path, required=True, help="public key (PEM, raw 32 bytes or hex)")
    p.add_argument("--board", help="also require this board")
    p.add_argument("--min-counter", type=int, help="also require counter >= N (anti-downgrade)")
    p.set_defaults(func=_run)
