"""OTA packages (docs/ota.md "OTA packages"): what `fieldlink ota make` writes and `ota inspect` reads.

A package is three files next to each other, ``NAME.ota.json`` (the signed manifest, canonical JSON as
in :mod:`fieldlink_host.signing` plus ``stream_size`` and, for apps, ``mpy``), ``NAME.ota.sig`` (64-byte
Ed25519 signature over exactly those bytes) and ``NAME.ota.bin`` (the stream the device receives):

- app: the bundle's ``manifest.json`` followed by every file it lists, in its order (the signed
  ``size``/``sha256`` are those of ``manifest.json``, which holds every file's size and sha256);
- firmware, rules, keys: the payload itself.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from fieldlink_host.build import MANIFEST, load_bundle
from fieldlink_host.errors import FieldlinkError
from fieldlink_host.keys import key_id, load_private_key, load_public_key, public_raw
from fieldlink_host.signing import FIELDS, KINDS, MAX_COUNTER, OTA_FORMAT, encode_manifest, next_counter

SUFFIX_MANIFEST = ".ota.json"
SUFFIX_SIG = ".ota.sig"
SUFFIX_STREAM = ".ota.bin"
ESP_IMAGE_MAGIC = 0xE9
MAX_SMALL = 65536  # rules and keys payloads (fieldlink.ota.updater.MAX_SMALL)
OTA_FIELDS: dict[str, type] = {**FIELDS, "stream_size": int}


@dataclass(frozen=True)
class Package:
    manifest: dict[str, Any]
    manifest_path: Path
    signature_path: Path
    stream_path: Path


def package_paths(base: Path) -> tuple[Path, Path, Path]:
    """(manifest, signature, stream) for the package base path ``DIR/NAME``."""
    return (base.with_name(base.name + SUFFIX_MANIFEST), base.with_name(base.name + SUFFIX_SIG),
            base.with_name(base.name + SUFFIX_STREAM))


def bundle_mpy(root: Path, files: list[str]) -> list[int]:
    """[version, sub-version, arch] of the bundle's .mpy files (arch 0 when none has native code)."""
    versions: set[int] = set()
    native: set[tuple[int, int]] = set()
    for rel in files:
        if not rel.endswith(".mpy"):
            continue
        head = (root / rel).read_bytes()[:4]
        if len(head) < 4 or head[0:1] != b"M":
            raise FieldlinkError("not a .mpy file", where=str(root / rel))
        versions.add(head[1])
        if head[2] >> 2:
            native.add((head[2] & 3, head[2] >> 2))
    if not versions:
        raise FieldlinkError("the bundle has no .mpy files", where=str(root))
    if len(versions) > 1 or len(native) > 1:
        raise FieldlinkError(f"the bundle mixes .mpy versions {sorted(versions)} / native {sorted(native)}",
                             where=str(root))
    sub, arch = next(iter(native)) if native else (0, 0)
    return [versions.pop(), sub, arch]


def keys_document(pubs: list[Path | str]) -> bytes:
    """The keys payload: every key the device trusts afterwards (the others are retired)."""
    if not pubs:
        raise FieldlinkError("a keys update needs at least one public key")
    raw = [public_raw(load_public_key(p)).hex() for p in pubs]
    return json.dumps({"fieldlink_keys": 1, "keys": raw}, sort_keys=True, separators=(",", ":")).encode()


def make_package(target: Path | str | None, key_path: Path | str, *, kind: str | None = None,
                 board: str | None = None, version: str | None = None, counter: int | None = None,
                 out: Path | str | None = None, keys: list[Path | str] | None = None) -> Package:
    """Sign ``target`` (bundle directory: kind app; file: firmware or rules; for kind keys the public
    keys in ``keys``) and write the package. ``out`` is the package base path (default: next to the
    target, or ``keys`` in the working directory)."""
    kp = Path(key_path)
    key = load_private_key(kp)
    t = Path(target) if target is not None else None
    extra: dict[str, Any] = {}
    if t is not None and t.is_dir():
        if kind not in (None, "app"):
            raise FieldlinkError(f"a bundle directory is an app update, not {kind!r}", where=str(t))
        kind = "app"
        bundle = load_bundle(t)
        if board is not None and board != bundle.board:
            raise FieldlinkError(f"bundle is for board {bundle.board!r}, not {board!r}", where=str(t))
        board = bundle.board
        version = version or str(bundle.manifest.get("version"))
        names = [f.path for f in bundle.files]
        head = (t / MANIFEST).read_bytes()
        stream = head + b"".join((t / n).read_bytes() for n in names)
        payload, payload_name = head, MANIFEST
        extra["mpy"] = bundle_mpy(t, names)
        base = Path(out) if out is not None else t.parent / t.name
    else:
        if kind not in KINDS or kind == "app":
            raise FieldlinkError("give a bundle directory, or --kind firmware|rules|keys")
        if not board:
            raise FieldlinkError(f"a {kind} update needs --board")
        if not version:
            raise FieldlinkError(f"a {kind} update needs --version")
        if kind == "keys":
            payload = keys_document(list(keys or []) + ([t] if t is not None else []))
            payload_name = "keys.json"
            base = Path(out) if out is not None else Path(f"keys-{version}")
        else:
            if t is None or not t.is_file():
                raise FieldlinkError("payload file not found", where=str(t))
            payload = t.read_bytes()
            payload_name = t.name
            base = Path(out) if out is not None else t
            if kind == "firmware" and payload[:1] != bytes([ESP_IMAGE_MAGIC]):
                raise FieldlinkError("not an ESP firmware image (no 0xE9 magic byte)", where=str(t))
            if kind == "rules":
                from fieldlink.rules.verify import VerifyError, verify

                try:
                    verify(payload)
                except VerifyError as exc:
                    raise FieldlinkError(f"not a valid rules program: {exc}", where=str(t)) from None
        if kind in ("rules", "keys") and len(payload) > MAX_SMALL:
            raise FieldlinkError(f"{kind} payload is {len(payload)} bytes, devices take at most {MAX_SMALL}")
        stream = payload
    if counter is None:
        counter = next_counter(kp)
    if not 0 <= counter <= MAX_COUNTER:
        raise FieldlinkError(f"counter must be 0..{MAX_COUNTER}, got {counter}")
    manifest: dict[str, Any] = {
        "fieldlink_ota": OTA_FORMAT, "kind": kind, "board": board, "version": str(version), "counter": counter,
        "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest(),
        "key_id": key_id(key.public_key()), "payload": payload_name, "stream_size": len(stream), **extra,
    }
    encoded = encode_manifest(manifest)
    mpath, spath, bpath = package_paths(base)
    bpath.parent.mkdir(parents=True, exist_ok=True)
    bpath.write_bytes(stream)
    spath.write_bytes(key.sign(encoded))
    mpath.write_bytes(encoded)
    cf = kp.with_name(kp.name + ".counter")
    try:
        prev = int(cf.read_text().strip())
    except (OSError, ValueError):
        prev = -1
    if counter > prev:
        cf.write_text(f"{counter}\n")
    if kind == "keys":  # the next key continues the counter sequence (devices compare per kind)
        for p in [*(keys or []), *([t] if t is not None else [])]:
            nxt = Path(p).with_suffix(".key")
            if nxt.is_file() and next_counter(nxt) <= counter:
                nxt.with_name(nxt.name + ".counter").write_text(f"{counter}\n")
    return Package(manifest, mpath, spath, bpath)


def _resolve(path: Path) -> Path:
    """The package base path from NAME, NAME.ota.json, NAME.ota.sig or NAME.ota.bin."""
    for suffix in (SUFFIX_MANIFEST, SUFFIX_SIG, SUFFIX_STREAM):
        if path.name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)])
    return path


def inspect_package(path: Path | str, pub: Path | str | None = None) -> dict[str, Any]:
    """Read a package and check everything that can be checked: fields, stream size and hashes (every
    file of an app), and the signature when a public key is given. Returns a report dict whose
    ``problems`` list is empty when the package is good."""
    base = _resolve(Path(path))
    mpath, spath, bpath = package_paths(base)
    try:
        encoded = mpath.read_bytes()
        sig = spath.read_bytes()
        stream = bpath.read_bytes()
    except OSError as exc:
        raise FieldlinkError(f"not an OTA package ({exc.strerror})", where=str(exc.filename)) from exc
    try:
        m = json.loads(encoded)
    except ValueError as exc:
        raise FieldlinkError(f"signed manifest is not JSON: {exc}", where=str(mpath)) from exc
    if not isinstance(m, dict):
        raise FieldlinkError("signed manifest is not a JSON object", where=str(mpath))
    problems: list[str] = []
    for name, typ in OTA_FIELDS.items():
        v = m.get(name)
        if not isinstance(v, typ) or isinstance(v, bool):
            problems.append(f"field {name!r} missing or not {typ.__name__}")
    if encode_manifest(m) != encoded:
        problems.append("signed manifest is not canonical JSON")
    if len(sig) != 64:
        problems.append(f"signature is {len(sig)} bytes, not 64")
    signature = "not checked (no --pub)"
    if pub is not None:
        pk = load_public_key(pub)
        if m.get("key_id") != key_id(pk):
            signature = f"signed with key {m.get('key_id')}, not {key_id(pk)}"
            problems.append(signature)
        else:
            try:
                pk.verify(sig, encoded)
                signature = f"good ({key_id(pk)})"
            except InvalidSignature:
                signature = "BAD"
                problems.append("bad signature")
    files: list[dict[str, Any]] = []
    raw_size = m.get("size")
    size = raw_size if isinstance(raw_size, int) else -1
    if len(stream) != m.get("stream_size"):
        problems.append(f"stream is {len(stream)} bytes, manifest says {m.get('stream_size')}")
    head = stream[:size] if size >= 0 else b""
    if hashlib.sha256(head).hexdigest() != m.get("sha256") or len(head) != size:
        problems.append("payload does not match the signed size/sha256")
    elif m.get("kind") == "app":
        try:
            bm = json.loads(head)
            pos = size
            for f in bm["files"]:
                data = stream[pos:pos + int(f["size"])]
                ok = len(data) == f["size"] and hashlib.sha256(data).hexdigest() == f["sha256"]
                files.append({"path": f["path"], "size": f["size"], "ok": ok})
                if not ok:
                    problems.append(f"file {f['path']} does not match the bundle manifest")
                pos += int(f["size"])
            if pos != len(stream):
                problems.append(f"stream has {len(stream) - pos} bytes after the last listed file")
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"bundle manifest unreadable: {exc}")
    elif m.get("kind") == "firmware" and stream[:1] != bytes([ESP_IMAGE_MAGIC]):
        problems.append("firmware image has no 0xE9 magic byte")
    elif m.get("kind") == "keys":
        try:
            doc = json.loads(head)
            files = [{"key_id": hashlib.sha256(bytes.fromhex(k)).digest()[:8].hex(), "public": k}
                     for k in doc["keys"]]
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"keys document unreadable: {exc}")
    return {"package": str(base), "manifest": m, "signature": signature, "files": files,
            "stream_bytes": len(stream), "problems": problems, "ok": not problems}


__all__ = ["Package", "bundle_mpy", "inspect_package", "keys_document", "make_package", "package_paths"]
