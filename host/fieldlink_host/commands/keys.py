"""`fieldlink keys new|show`: Ed25519 signing keys for OTA manifests."""

from __future__ import annotations

import argparse
from pathlib import Path

from fieldlink_host.errors import FieldlinkError
from fieldlink_host.keys import key_info, new_keypair

EXAMPLES = """examples:
  fieldlink keys new --out keys/                 keys/fieldlink.key (0600) and keys/fieldlink.pub
  fieldlink keys new --out keys/ --name fleet2   keys/fleet2.key and keys/fleet2.pub
  fieldlink keys show keys/fieldlink.pub         key id and raw public key (hex)
Existing key files are never overwritten.
"""


def _run(args: argparse.Namespace) -> int:
    if args.action == "new":
        if args.out is None:
            raise FieldlinkError("keys new needs --out DIR")
        kp = new_keypair(args.out, args.name)
        print(f"private key: {kp.private} (mode 0600, keep it secret)")
        print(f"public key:  {kp.public}")
        print(f"key id:      {kp.key_id}")
        return 0
    if not args.file:
        raise FieldlinkError("keys show needs FILE")
    info = key_info(args.file)
    print(f"file:       {info.path} ({info.kind} key, Ed25519)")
    print(f"key id:     {info.key_id}")
    print(f"public key: {info.public_hex}")
    if info.insecure and info.mode is not None:
        print(f"warning:    private key file mode is {info.mode:04o}; run: chmod 600 {info.path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("keys", help="create or show Ed25519 signing keys",
                       description="Create an Ed25519 key pair for signing OTA manifests, or show a key's id.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["new", "show"])
    p.add_argument("file", nargs="?", type=Path, help="key file (show)")
    p.add_argument("--out", type=Path, help="directory for the new key pair (new)")
    p.add_argument("--name", default="fieldlink", help="file name stem of the new key pair (default fieldlink)")
    p.set_defaults(func=_run)
