"""Ed25519 signing keys: create, load, identify.

Files written by :func:`new_keypair` (``fieldlink keys new --out DIR``):
``DIR/NAME.key`` — private key, PKCS#8 PEM, unencrypted, mode 0600;
``DIR/NAME.pub`` — public key, SubjectPublicKeyInfo PEM.
The key id is the first 8 bytes of SHA-256 over the raw 32-byte public key, as 16 hex digits
(docs/ota.md). Public keys load from PEM, DER, the raw 32 bytes, or 64 hex digits.
"""

from __future__ import annotations

import hashlib
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fieldlink_host.errors import FieldlinkError
from fieldlink_host.fsio import read_bytes, user_errors, write_bytes

PRIVATE_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"


@dataclass(frozen=True)
class KeyPairFiles:
    private: Path
    public: Path
    key_id: str


@dataclass(frozen=True)
class KeyInfo:
    path: Path
    kind: str  # "private" or "public"
    key_id: str
    public_hex: str
    mode: int | None  # file mode of a private key file

    @property
    def insecure(self) -> bool:
        return self.kind == "private" and self.mode is not None and bool(self.mode & 0o077)


def public_raw(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(pub: Ed25519PublicKey) -> str:
    return hashlib.sha256(public_raw(pub)).digest()[:8].hex()


def new_keypair(out_dir: Path | str, name: str = "fieldlink") -> KeyPairFiles:
    """Generate a key pair into ``out_dir``; never overwrites an existing file."""
    d = Path(out_dir)
    if not name or "/" in name or name.startswith("."):
        raise FieldlinkError(f"invalid key name {name!r}")
    if d.exists() and not d.is_dir():
        raise FieldlinkError("--out must be a directory, this is a file", where=str(d))
    with user_errors(d, "cannot create the key directory"):
        d.mkdir(parents=True, exist_ok=True)
    priv_path = d / f"{name}{PRIVATE_SUFFIX}"
    pub_path = d / f"{name}{PUBLIC_SUFFIX}"
    for p in (priv_path, pub_path):
        if p.exists():
            raise FieldlinkError("refusing to overwrite an existing key file", where=str(p))
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    pub_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    write_bytes(priv_path, pem, "private key", mode=0o600, exclusive=True)  # 0600 independent of the umask
    try:
        write_bytes(pub_path, pub_pem, "public key", mode=0o644, exclusive=True)
    except FieldlinkError:
        priv_path.unlink()
        raise
    return KeyPairFiles(priv_path, pub_path, key_id(key.public_key()))


def _read(path: Path | str) -> bytes:
    return read_bytes(path, "key", limit=1 << 16)


def load_private_key(path: Path | str) -> Ed25519PrivateKey:
    data = _read(path)
    try:
        if data.lstrip().startswith(b"-----"):
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise FieldlinkError(f"not an unencrypted private key: {exc}", where=str(path)) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise FieldlinkError("not an Ed25519 private key", where=str(path))
    return key


def load_public_key(path: Path | str) -> Ed25519PublicKey:
    """A public key from PEM/DER, raw 32 bytes or 64 hex digits; a private key file also works."""
    data = _read(path)
    text = data.strip()
    try:
        if text.startswith(b"-----"):
            if b"PRIVATE KEY" in text:
                return load_private_key(path).public_key()
            key = serialization.load_pem_public_key(text)
        elif len(data) == 32:
            return Ed25519PublicKey.from_public_bytes(data)
        elif len(text) == 64 and all(c in b"0123456789abcdefABCDEF" for c in text):
            return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.decode()))
        else:
            key = serialization.load_der_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise FieldlinkError(f"not a public key: {exc}", where=str(path)) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise FieldlinkError("not an Ed25519 public key", where=str(path))
    return key


def key_info(path: Path | str) -> KeyInfo:
    p = Path(path)
    data = _read(p)
    if b"PRIVATE KEY" in data or (not data.strip().startswith(b"-----") and len(data) == 48):
        pub = load_private_key(p).public_key()
        mode = stat.S_IMODE(p.stat().st_mode)
        return KeyInfo(p, "private", key_id(pub), public_raw(pub).hex(), mode)
    pub = load_public_key(p)
    return KeyInfo(p, "public", key_id(pub), public_raw(pub).hex(), None)
