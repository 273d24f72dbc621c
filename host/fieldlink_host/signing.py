"""Signed OTA manifests (docs/ota.md): sign a bundle or a payload file with Ed25519, verify it.

Signing writes two files next to the payload: the signed manifest (canonical JSON: sorted keys,
``","``/``":"`` separators, ASCII, no trailing newline) and its 64-byte raw Ed25519 signature over
exactly those bytes. For an app bundle (a directory) they are ``BUNDLE/ota.json`` and
``BUNDLE/ota.sig`` and the signed payload is ``BUNDLE/manifest.json`` (which lists the size and
sha256 of every other file). For a single file (firmware, rules, keys) they are ``FILE.ota.json``
and ``FILE.ota.sig``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from fieldlink_host.build import MANIFEST, load_bundle, verify_bundle_files
from fieldlink_host.errors import FieldlinkError
from fieldlink_host.fsio import read_bytes, read_text, write_bytes, write_text
from fieldlink_host.keys import key_id, load_private_key, load_public_key

OTA_FORMAT = 1
KINDS = ("app", "firmware", "rules", "keys")
SIGNED_NAME = "ota.json"
SIG_NAME = "ota.sig"
SIG_LEN = 64
MAX_COUNTER = (1 << 32) - 1
FIELDS: dict[str, type] = {"fieldlink_ota": int, "kind": str, "board": str, "version": str, "counter": int,
                           "size": int, "sha256": str, "key_id": str, "payload": str}


def encode_manifest(m: dict[str, Any]) -> bytes:
    return json.dumps(m, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def signature_paths(target: Path) -> tuple[Path, Path, Path]:
    """(payload, signed manifest, signature) for a bundle directory or a payload file."""
    if target.is_dir():
        return target / MANIFEST, target / SIGNED_NAME, target / SIG_NAME
    return target, target.with_name(target.name + ".ota.json"), target.with_name(target.name + ".ota.sig")


@dataclass(frozen=True)
class Signed:
    manifest: dict[str, Any]
    manifest_path: Path
    signature_path: Path


def _counter_file(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".counter")


def last_counter(key_path: Path) -> int | None:
    """The last counter used with a key (``KEY.counter``), None if none was recorded yet.

    A counter file that exists but does not hold one decimal number in 0..MAX_COUNTER is refused:
    the anti-downgrade counter must never silently restart."""
    f = _counter_file(key_path)
    if not f.exists() and not f.is_symlink():
        return None
    text = read_text(f, "counter file", limit=64).strip()
    if not text.isdigit() or not text.isascii() or int(text) > MAX_COUNTER:
        raise FieldlinkError(f"counter file must hold one number 0..{MAX_COUNTER}, got {text[:20]!r}; "
                             "fix it by hand (never lower it)", where=str(f))
    return int(text)


def next_counter(key_path: Path) -> int:
    """The next anti-downgrade counter for a key: one more than the last one recorded next to it."""
    last = last_counter(key_path)
    return 1 if last is None else last + 1


def sign(target: Path | str, key_path: Path | str, *, kind: str | None = None, board: str | None = None,
         version: str | None = None, counter: int | None = None) -> Signed:
    """Sign a bundle directory (kind app) or a payload file (kind firmware/rules/keys).

    ``counter`` defaults to one more than the last counter used with this key (kept in
    ``KEY.counter``); the device refuses a counter lower than the one it has installed.
    """
    t = Path(target)
    kp = Path(key_path)
    if not t.exists():
        raise FieldlinkError("nothing to sign: path not found", where=str(t))
    key = load_private_key(kp)
    payload, mpath, spath = signature_paths(t)
    if t.is_dir():
        if kind not in (None, "app"):
            raise FieldlinkError(f"a bundle directory is signed as kind 'app', not {kind!r}")
        kind = "app"
        bundle = load_bundle(t)
        if board is not None and board != bundle.board:
            raise FieldlinkError(f"bundle is for board {bundle.board!r}, not {board!r}", where=str(t))
        board = bundle.board
        version = version or str(bundle.manifest.get("version"))
    else:
        if kind is None or kind == "app" or kind not in KINDS:
            raise FieldlinkError(f"a payload file needs --kind {'|'.join(KINDS[1:])}")
        if not board:
            raise FieldlinkError("a payload file needs --board")
        if not version:
            raise FieldlinkError("a payload file needs --version")
    prev = last_counter(kp)
    if counter is None:
        counter = 1 if prev is None else prev + 1
    if not 0 <= counter <= MAX_COUNTER:
        raise FieldlinkError(f"counter must be 0..{MAX_COUNTER}, got {counter}")
    data = read_bytes(payload, "payload")
    manifest: dict[str, Any] = {
        "fieldlink_ota": OTA_FORMAT,
        "kind": kind,
        "board": board,
        "version": str(version),
        "counter": counter,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "key_id": key_id(key.public_key()),
        "payload": payload.name,
    }
    encoded = encode_manifest(manifest)
    sig = key.sign(encoded)
    # the counter first: a crash after it leaves a gap, never a reused counter
    if prev is None or counter > prev:
        write_text(_counter_file(kp), f"{counter}\n", "counter file")
    write_bytes(mpath, encoded, "signed manifest")
    write_bytes(spath, sig, "signature")
    return Signed(manifest, mpath, spath)


def verify(target: Path | str, pub_path: Path | str, *, board: str | None = None,
           min_counter: int | None = None) -> dict[str, Any]:
    """Verify a signed bundle or payload file; return the signed manifest or raise FieldlinkError.

    Checks, in order: signature length, key id, the Ed25519 signature over the exact manifest bytes,
    the manifest fields, the payload size and sha256 and, for a bundle, every file listed in
    manifest.json (and that no unlisted file is present).
    """
    t = Path(target)
    if not t.exists():
        raise FieldlinkError("path not found", where=str(t))
    payload, mpath, spath = signature_paths(t)
    for p in (mpath, spath):
        if not p.is_file():
            raise FieldlinkError("not signed (file missing)", where=str(p))
    encoded = read_bytes(mpath, "signed manifest", limit=1 << 16)
    sig = read_bytes(spath, "signature", limit=1 << 10)
    pub = load_public_key(pub_path)
    if len(sig) != SIG_LEN:
        raise FieldlinkError(f"signature must be {SIG_LEN} bytes, got {len(sig)}", where=str(spath))
    try:
        claimed = json.loads(encoded)
    except (ValueError, RecursionError):
        claimed = None
    if isinstance(claimed, dict) and claimed.get("key_id") not in (None, key_id(pub)):
        raise FieldlinkError(f"signed with key {claimed.get('key_id')}, not with {key_id(pub)} ({pub_path})",
                             where=str(mpath))
    try:
        pub.verify(sig, encoded)
    except InvalidSignature as exc:
        raise FieldlinkError("bad signature", where=str(mpath)) from exc
    m = claimed
    if not isinstance(m, dict) or encode_manifest(m) != encoded:
        raise FieldlinkError("signed manifest is not canonical JSON", where=str(mpath))
    for name, typ in FIELDS.items():
        v = m.get(name)
        if not isinstance(v, typ) or isinstance(v, bool):
            raise FieldlinkError(f"field {name!r} missing or not {typ.__name__}", where=str(mpath))
    if m["fieldlink_ota"] != OTA_FORMAT:
        raise FieldlinkError(f"unsupported format {m['fieldlink_ota']}", where=str(mpath))
    if m["kind"] not in KINDS:
        raise FieldlinkError(f"unknown kind {m['kind']!r}", where=str(mpath))
    if m["payload"] != payload.name:
        raise FieldlinkError(f"manifest signs {m['payload']!r}, not {payload.name!r}", where=str(mpath))
    if board is not None and m["board"] != board:
        raise FieldlinkError(f"signed for board {m['board']!r}, not {board!r}", where=str(mpath))
    if min_counter is not None and m["counter"] < min_counter:
        raise FieldlinkError(f"counter {m['counter']} is below {min_counter} (downgrade)", where=str(mpath))
    data = read_bytes(payload, "payload")
    if len(data) != m["size"] or hashlib.sha256(data).hexdigest() != m["sha256"]:
        raise FieldlinkError("payload does not match the signed size/sha256", where=str(payload))
    if t.is_dir():
        if m["kind"] != "app":
            raise FieldlinkError("a bundle directory must be signed as kind 'app'", where=str(mpath))
        bundle = load_bundle(t, check=False)
        if bundle.board != m["board"]:
            raise FieldlinkError(f"bundle board {bundle.board!r} differs from the signed {m['board']!r}",
                                 where=str(payload))
        verify_bundle_files(bundle)
    return m


__all__ = ["KINDS", "Signed", "encode_manifest", "next_counter", "sign", "signature_paths", "verify"]
