"""`fieldlink ota make|inspect` and the device updater on the packages they make: real `cryptography`
signatures verified by the device's pure-Python Ed25519 (fieldlink.ota, in this process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fieldlink.ota import boot, bootsel
from fieldlink.ota.state import State
from fieldlink.ota.updater import OtaError, Updater
from fieldlink_host.build import FORMAT, MANIFEST, BundleFile, canonical_json, sha256_file
from fieldlink_host.cli import main
from fieldlink_host.errors import FieldlinkError
from fieldlink_host.keys import new_keypair
from fieldlink_host.ota.package import inspect_package, make_package

RUNTIME = 6 | (3 << 8) | (2 << 10)


def _bundle(d: Path, tag: bytes, board: str = "sim-node") -> Path:
    files = {"main.mpy": b"M\x06\x00\x1f" + tag, "fieldlink/node.mpy": b"M\x06\x00\x1f" + tag * 50,
             "board.json": b'{"name":"sim-node"}\n'}
    for rel, data in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
    listed = [BundleFile(rel, len(data), sha256_file(d / rel)) for rel, data in sorted(files.items())]
    manifest = {"format": FORMAT, "board": board, "chip": "esp32c6", "arch": "x64", "version": tag.decode(),
                "source_revision": "test", "mpy_cross": "test", "opt_level": 0,
                "files": [f.as_dict() for f in listed], "total_size": sum(f.size for f in listed)}
    (d / MANIFEST).write_bytes(canonical_json(manifest))
    return d


def _board(tmp: Path, pub: Path) -> tuple[str, str]:
    root = tmp / "board"
    (root / "fl" / "a").mkdir(parents=True)
    (root / "fl" / "active").write_text("a")
    store = root / "fl" / "data"
    store.mkdir()
    from fieldlink_host.keys import load_public_key, public_raw
    st = State(str(store))
    st.install_keys([public_raw(load_public_key(pub))])
    st.save()
    return str(root), str(store)


def _apply(root: str, store: str, base: Path, chunk: int = 200) -> dict[str, object]:
    m = Path(str(base) + ".ota.json").read_bytes()
    sig = Path(str(base) + ".ota.sig").read_bytes()
    stream = Path(str(base) + ".ota.bin").read_bytes()
    up = Updater(store, root, board="sim-node", mpy=RUNTIME)
    s = up.begin(m, sig)
    for off in range(0, len(stream), chunk):
        s.write(off, stream[off:off + chunk])
    return s.finish()


def test_app_package_made_on_the_host_installs_on_the_device(tmp_path: Path) -> None:
    kp = new_keypair(tmp_path / "keys", "owner")
    b = _bundle(tmp_path / "v1", b"v1")
    pkg = make_package(b, kp.private)
    m = pkg.manifest
    assert m["kind"] == "app" and m["board"] == "sim-node" and m["counter"] == 1 and m["mpy"] == [6, 0, 0]
    assert m["stream_size"] == pkg.stream_path.stat().st_size
    r = inspect_package(pkg.manifest_path, kp.public)
    assert r["ok"] and r["signature"].startswith("good") and [f["path"] for f in r["files"]] == [
        "board.json", "fieldlink/node.mpy", "main.mpy"]
    root, store = _board(tmp_path, kp.public)
    assert _apply(root, store, tmp_path / "v1")["reboot"]
    assert bootsel.select(root) == "b"
    assert boot.run_trial(root, store, lambda: (True, None))["state"] == "confirmed"
    for rel in ("main.mpy", "fieldlink/node.mpy", "board.json", "manifest.json"):
        assert (Path(root) / "fl" / "b" / rel).read_bytes() == (b / rel).read_bytes()
    # the second package gets the next counter; re-applying the first is a replay
    b2 = _bundle(tmp_path / "v2", b"v2")
    assert make_package(b2, kp.private).manifest["counter"] == 2
    with pytest.raises(OtaError) as e:
        _apply(root, store, tmp_path / "v1")
    assert e.value.reason == "replay"
    _apply(root, store, tmp_path / "v2")


def test_inspect_finds_tampering_and_wrong_key(tmp_path: Path) -> None:
    kp = new_keypair(tmp_path / "keys", "owner")
    other = new_keypair(tmp_path / "keys", "other")
    pkg = make_package(_bundle(tmp_path / "v1", b"v1"), kp.private)
    assert inspect_package(pkg.stream_path)["ok"]
    assert not inspect_package(pkg.stream_path, other.public)["ok"]
    data = bytearray(pkg.stream_path.read_bytes())
    data[-3] ^= 1
    pkg.stream_path.write_bytes(bytes(data))
    r = inspect_package(tmp_path / "v1", kp.public)
    assert not r["ok"] and any("main.mpy" in p for p in r["problems"])
    assert main(["ota", "inspect", str(tmp_path / "v1"), "--pub", str(kp.public)]) == 1


def test_firmware_rules_and_keys_packages(tmp_path: Path) -> None:
    kp = new_keypair(tmp_path / "keys", "owner")
    nxt = new_keypair(tmp_path / "keys", "next")
    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"\x00" * 64)
    with pytest.raises(FieldlinkError, match="0xE9"):
        make_package(fw, kp.private, kind="firmware", board="sim-node", version="1.24")
    fw.write_bytes(b"\xe9" + b"\x01" * 63)
    f = make_package(fw, kp.private, kind="firmware", board="sim-node", version="1.24")
    assert f.manifest["stream_size"] == 64 and inspect_package(fw, kp.public)["ok"]
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"FLRV junk")
    with pytest.raises(FieldlinkError, match="not a valid rules program"):
        make_package(bad, kp.private, kind="rules", board="sim-node", version="r1")
    k = make_package(None, kp.private, kind="keys", board="sim-node", version="k2", keys=[nxt.public],
                     out=tmp_path / "rot")
    assert inspect_package(tmp_path / "rot", kp.public)["files"][0]["key_id"] == nxt.key_id
    assert (tmp_path / "keys" / "next.key.counter").read_text().strip() == str(k.manifest["counter"])
    root, store = _board(tmp_path, kp.public)
    _apply(root, store, tmp_path / "rot")
    assert sorted(State(store).d["keys"]) == [nxt.key_id]
    app = make_package(_bundle(tmp_path / "v9", b"v9"), kp.private)  # signed by the retired key
    with pytest.raises(OtaError) as e:
        _apply(root, store, tmp_path / "v9")
    assert e.value.reason == "retired_key"
    assert app.manifest["counter"] > k.manifest["counter"]
    assert make_package(_bundle(tmp_path / "v10", b"v10"), nxt.private).manifest["counter"] > k.manifest["counter"]
    _apply(root, store, tmp_path / "v10")


def test_cli_make_inspect_json_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kp = new_keypair(tmp_path / "keys", "owner")
    b = _bundle(tmp_path / "v1", b"v1")
    assert main(["ota", "make", str(b), "--key", str(kp.private), "--counter", "7"]) == 0
    capsys.readouterr()
    assert main(["ota", "inspect", str(b) + ".ota.json", "--json", "--pub", str(kp.public)]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["ok"] and r["manifest"]["counter"] == 7
    assert main(["ota", "make", str(tmp_path / "nope.bin"), "--kind", "rules", "--board", "sim-node",
                 "--version", "1", "--key", str(kp.private)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fieldlink: error: ") and "Traceback" not in err and len(err.splitlines()) == 1
    assert main(["ota", "inspect", str(tmp_path / "missing")]) == 1
    assert "not an OTA package" in capsys.readouterr().err


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "build"


def test_build_owner_key_is_trusted_on_first_boot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fieldlink.ota.state import bootstrap
    from fieldlink_host.build import build_bundle

    kp = new_keypair(tmp_path / "keys", "owner")
    b = build_bundle(str(FIXTURES / "board.toml"), tmp_path / "bundle", device_pkg=FIXTURES / "device" / "fieldlink",
                     revision="x", owner_keys=[kp.public])
    assert "owner_keys.json" in [f.path for f in b.files]  # listed and hashed like every bundle file
    root = tmp_path / "board"
    slot = root / "fl" / "a"
    slot.mkdir(parents=True)
    (slot / "owner_keys.json").write_bytes((b.root / "owner_keys.json").read_bytes())
    store = root / "fl" / "data"
    assert bootstrap(str(store), str(slot)) == [kp.key_id]
    from fieldlink_host.keys import key_info
    assert State(str(store)).d["keys"] == {kp.key_id: key_info(kp.public).public_hex}
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key")
    assert main(["build", "--board", str(FIXTURES / "board.toml"), "--out", str(tmp_path / "b2"),
                 "--owner-key", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fieldlink: error: ") and len(err.strip().splitlines()) == 1
