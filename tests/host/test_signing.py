"""keys new/show, sign and verify: every flipped byte (manifest, payload, signature) is refused, as is
a wrong key; the signature is checked with an independent Ed25519 verification of the raw bytes."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fieldlink_host.build import build_bundle
from fieldlink_host.cli import main
from fieldlink_host.errors import FieldlinkError
from fieldlink_host.keys import key_id, key_info, load_private_key, load_public_key, new_keypair, public_raw
from fieldlink_host.signing import sign, verify

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "build"


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    build_bundle(str(FIX / "board.toml"), out, app_dir=FIX / "app", device_pkg=FIX / "device" / "fieldlink",
                 rules=[FIX / "rules" / "demo.rules"], revision="r")
    return out


@pytest.fixture()
def keys(tmp_path: Path) -> tuple[Path, Path]:
    kp = new_keypair(tmp_path / "keys")
    return kp.private, kp.public


def test_keys_new_mode_and_no_overwrite(tmp_path: Path) -> None:
    kp = new_keypair(tmp_path / "k", "fleet")
    assert stat.S_IMODE(kp.private.stat().st_mode) == 0o600
    assert kp.private.name == "fleet.key" and kp.public.name == "fleet.pub"
    before = kp.private.read_bytes()
    with pytest.raises(FieldlinkError, match="overwrite"):
        new_keypair(tmp_path / "k", "fleet")
    assert kp.private.read_bytes() == before
    (tmp_path / "k" / "other.pub").write_text("x")  # half a pair present: still refused, nothing written
    with pytest.raises(FieldlinkError, match="overwrite"):
        new_keypair(tmp_path / "k", "other")
    assert not (tmp_path / "k" / "other.key").exists()


def test_key_id_and_show(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    priv, pub = keys
    raw = public_raw(load_public_key(pub))
    assert len(raw) == 32
    expected = hashlib.sha256(raw).hexdigest()[:16]
    assert key_info(priv).key_id == key_info(pub).key_id == expected == key_id(load_private_key(priv).public_key())
    (tmp_path / "raw.bin").write_bytes(raw)
    (tmp_path / "raw.hex").write_text(raw.hex() + "\n")
    assert key_id(load_public_key(tmp_path / "raw.bin")) == key_id(load_public_key(tmp_path / "raw.hex")) == expected
    priv.chmod(0o644)
    assert key_info(priv).insecure


def test_sign_verify_bundle(bundle: Path, keys: tuple[Path, Path]) -> None:
    priv, pub = keys
    s = sign(bundle, priv, counter=7)
    m = verify(bundle, pub)
    assert m == s.manifest
    assert m["kind"] == "app" and m["board"] == "fixture-node" and m["counter"] == 7 and m["version"] == "9.8.7"
    payload = (bundle / "manifest.json").read_bytes()
    assert m["sha256"] == hashlib.sha256(payload).hexdigest() and m["size"] == len(payload)
    # independent check: raw Ed25519 over the exact bytes of ota.json, with the raw public key
    raw = public_raw(load_public_key(pub))
    Ed25519PublicKey.from_public_bytes(raw).verify((bundle / "ota.sig").read_bytes(), (bundle / "ota.json").read_bytes())
    assert json.loads((bundle / "ota.json").read_bytes()) == m
    with pytest.raises(FieldlinkError, match="board"):
        verify(bundle, pub, board="other")
    with pytest.raises(FieldlinkError, match="downgrade"):
        verify(bundle, pub, min_counter=8)


def test_counter_is_monotonic_per_key(bundle: Path, keys: tuple[Path, Path]) -> None:
    priv, _ = keys
    assert sign(bundle, priv).manifest["counter"] == 1
    assert sign(bundle, priv).manifest["counter"] == 2
    assert sign(bundle, priv, counter=10).manifest["counter"] == 10
    assert sign(bundle, priv).manifest["counter"] == 11


def _all_files(bundle: Path) -> list[Path]:
    # the build's marker (.fieldlink-build) only says "a build made this directory": not payload, not deployed
    return sorted(p for p in bundle.rglob("*") if p.is_file() and p.name != ".fieldlink-build")


def test_every_flipped_byte_is_refused(bundle: Path, keys: tuple[Path, Path]) -> None:
    priv, pub = keys
    sign(bundle, priv)
    verify(bundle, pub)
    checked = 0
    for f in _all_files(bundle):
        orig = f.read_bytes()
        # every byte of the small signed files, a spread of positions in the others
        positions = range(len(orig)) if f.name in ("ota.json", "ota.sig") else sorted({0, len(orig) // 2, len(orig) - 1})
        for pos in positions:
            for flip in (0x01, 0x80):
                bad = bytearray(orig)
                bad[pos] ^= flip
                f.write_bytes(bytes(bad))
                with pytest.raises(FieldlinkError):
                    verify(bundle, pub)
                checked += 1
        f.write_bytes(orig)
    verify(bundle, pub)
    assert checked > 2 * (64 + 150)


def test_truncated_or_extended_signature_refused(bundle: Path, keys: tuple[Path, Path]) -> None:
    priv, pub = keys
    sign(bundle, priv)
    sig = (bundle / "ota.sig").read_bytes()
    for bad in (sig[:-1], sig + b"\x00", b""):
        (bundle / "ota.sig").write_bytes(bad)
        with pytest.raises(FieldlinkError, match="signature"):
            verify(bundle, pub)


def test_wrong_key_refused(bundle: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    priv, _ = keys
    other = new_keypair(tmp_path / "other")
    sign(bundle, priv)
    with pytest.raises(FieldlinkError, match="signed with key"):
        verify(bundle, other.public)
    # a forged key id does not help: the signature itself is checked
    m = json.loads((bundle / "ota.json").read_bytes())
    m["key_id"] = key_info(other.public).key_id
    (bundle / "ota.json").write_bytes(json.dumps(m, sort_keys=True, separators=(",", ":")).encode())
    with pytest.raises(FieldlinkError, match="bad signature"):
        verify(bundle, other.public)


def test_added_file_refused(bundle: Path, keys: tuple[Path, Path]) -> None:
    priv, pub = keys
    sign(bundle, priv)
    (bundle / "evil.py").write_text("import os\n")
    with pytest.raises(FieldlinkError, match="not listed"):
        verify(bundle, pub)


def test_sign_file_payload(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    priv, pub = keys
    fw = tmp_path / "fw.bin"
    fw.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(FieldlinkError, match="--kind"):
        sign(fw, priv)
    s = sign(fw, priv, kind="firmware", board="esp32-c6-devkitc-1", version="1.29.0")
    assert s.manifest_path.name == "fw.bin.ota.json" and s.signature_path.name == "fw.bin.ota.sig"
    assert verify(fw, pub)["kind"] == "firmware"
    data = bytearray(fw.read_bytes())
    data[5000] ^= 0xFF
    fw.write_bytes(bytes(data))
    with pytest.raises(FieldlinkError, match="payload"):
        verify(fw, pub)


def test_cli_keys_sign_verify(tmp_path: Path, bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "new", "--out", str(tmp_path / "ck")]) == 0
    assert main(["keys", "new", "--out", str(tmp_path / "ck")]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main(["keys", "show", str(tmp_path / "ck" / "fieldlink.pub")]) == 0
    assert "key id:" in capsys.readouterr().out
    assert main(["sign", str(bundle), "--key", str(tmp_path / "ck" / "fieldlink.key")]) == 0
    assert main(["verify", str(bundle), "--pub", str(tmp_path / "ck" / "fieldlink.pub")]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("ok: ")
    (bundle / "ota.sig").write_bytes(bytes(64))
    assert main(["verify", str(bundle), "--pub", str(tmp_path / "ck" / "fieldlink.pub")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fieldlink: error:") and "bad signature" in err and "Traceback" not in err
