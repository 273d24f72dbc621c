"""fieldlink build: golden manifest for the fixture tree (checked against independent sources),
reproducibility, mpy-cross errors with file:line, natmods, the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tomllib
from pathlib import Path

import pytest
from fieldlink_host.build import build_bundle, load_bundle, mpy_header_arch
from fieldlink_host.cli import main
from fieldlink_host.errors import FieldlinkError

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "build"
BOARD = FIX / "board.toml"
PKG = FIX / "device" / "fieldlink"
GOLDEN = FIX / "golden-manifest.json"


def _build(out: Path, **kw: object) -> object:
    return build_bundle(str(BOARD), out, app_dir=FIX / "app", rules=[FIX / "rules" / "demo.rules"],
                        device_pkg=PKG, revision="fixture-revision", **kw)  # type: ignore[arg-type]


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_manifest_matches_golden(tmp_path: Path) -> None:
    _build(tmp_path / "b")
    assert (tmp_path / "b" / "manifest.json").read_bytes() == GOLDEN.read_bytes()


def test_golden_agrees_with_independent_sources(tmp_path: Path) -> None:
    golden = json.loads(GOLDEN.read_text())
    files = {f["path"]: f for f in golden["files"]}
    # copied files: size and sha256 straight from the fixture sources
    for path, src in [("fieldlink/sub/defaults.txt", PKG / "sub" / "defaults.txt"),
                      ("settings.json", FIX / "app" / "settings.json"),
                      ("rules/demo.rules", FIX / "rules" / "demo.rules")]:
        data = src.read_bytes()
        assert files[path]["size"] == len(data)
        assert files[path]["sha256"] == hashlib.sha256(data).hexdigest()
    # every .py became a .mpy, nothing else is there, no sim module
    py = {p.relative_to(PKG.parent).with_suffix(".mpy").as_posix() for p in PKG.rglob("*.py")}
    py |= {p.relative_to(FIX / "app").with_suffix(".mpy").as_posix() for p in (FIX / "app").rglob("*.py")}
    assert {p for p in files if p.endswith(".mpy")} == py
    assert set(files) == py | {"fieldlink/sub/defaults.txt", "settings.json", "rules/demo.rules", "board.json"}
    # board.json against the TOML read with tomllib
    toml = tomllib.loads(BOARD.read_text())
    _build(tmp_path / "b")
    board_json = json.loads((tmp_path / "b" / "board.json").read_text())
    assert board_json["name"] == toml["board"]["name"] == golden["board"]
    assert board_json["chip"] == toml["board"]["chip"] == golden["chip"]
    assert [r["name"] for r in board_json["relays"]] == [r["name"] for r in toml["relays"]]
    assert "partitions" not in board_json
    assert golden["arch"] == toml["board"]["arch"] == "xtensawin"
    # version from the fixture package, mpy-cross version from the tool itself
    assert golden["version"] == "9.8.7"
    out = subprocess.run(["mpy-cross", "--version"], capture_output=True, text=True).stdout.strip()
    assert golden["mpy_cross"] == out
    assert golden["total_size"] == sum(f["size"] for f in golden["files"])
    assert [f["path"] for f in golden["files"]] == sorted(files)


def test_mpy_headers_name_the_board_arch(tmp_path: Path) -> None:
    # .mpy v6 header: 'M', 6, (arch << 2) | sub-version 3; arch 10 = xtensawin, 11 = rv32imc (py/persistentcode.h)
    _build(tmp_path / "s3")
    fast = (tmp_path / "s3" / "fieldlink" / "sub" / "fast.mpy").read_bytes()
    assert fast[:3] == bytes([ord("M"), 6, (10 << 2) | 3])
    assert mpy_header_arch(fast) == "xtensawin"
    assert (tmp_path / "s3" / "fieldlink" / "util.mpy").read_bytes()[:3] == b"M\x06\x00"  # bytecode only
    c6 = BOARD.read_text().replace('chip = "esp32s3"', 'chip = "esp32c6"').replace('"xtensawin"', '"rv32imc"')
    (tmp_path / "c6.toml").write_text(c6)
    build_bundle(str(tmp_path / "c6.toml"), tmp_path / "c6", device_pkg=PKG, revision="x")
    fast = (tmp_path / "c6" / "fieldlink" / "sub" / "fast.mpy").read_bytes()
    assert fast[:3] == bytes([ord("M"), 6, (11 << 2) | 3])


def test_bundle_runs_under_micropython(tmp_path: Path) -> None:
    # bytecode-only .mpy files are portable: the unix port imports the bundle and runs main
    _build(tmp_path / "b")
    env = dict(os.environ, MICROPYPATH=str(tmp_path / "b"))
    proc = subprocess.run(["micropython", "-c", "import main"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=30)
    assert proc.returncode == 0, proc.stderr
    # CRC-8/SMBUS check value of "123456789" is 0xF4 (catalogue value)
    assert proc.stdout.strip() == f"fieldlink fixture 9.8.7 5 {0xF4}"


def test_reproducible(tmp_path: Path) -> None:
    _build(tmp_path / "one")
    _build(tmp_path / "two")
    a, b = _tree(tmp_path / "one"), _tree(tmp_path / "two")
    assert a == b and len(a) == 10
    # rebuilding into the same directory replaces it with identical bytes and drops stale files
    (tmp_path / "one" / "stale.txt").write_text("x")
    _build(tmp_path / "one")
    assert _tree(tmp_path / "one") == b


def test_opt_level_changes_output(tmp_path: Path) -> None:
    _build(tmp_path / "o0")
    _build(tmp_path / "o3", opt_level=3)
    m0 = json.loads((tmp_path / "o0" / "manifest.json").read_text())
    m3 = json.loads((tmp_path / "o3" / "manifest.json").read_text())
    util0 = next(f for f in m0["files"] if f["path"] == "fieldlink/util.mpy")
    util3 = next(f for f in m3["files"] if f["path"] == "fieldlink/util.mpy")
    assert m3["opt_level"] == 3 and util3["size"] < util0["size"]  # -O3 drops the assert
    with pytest.raises(FieldlinkError):
        _build(tmp_path / "bad", opt_level=4)


def test_syntax_error_reports_file_and_line(tmp_path: Path) -> None:
    pkg = tmp_path / "fieldlink"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("VERSION = '1'\n")
    (pkg / "broken.py").write_text("x = 1\n\ndef f(:\n    pass\n")
    with pytest.raises(FieldlinkError) as ei:
        build_bundle(str(BOARD), tmp_path / "out", device_pkg=pkg, revision="x")
    assert str(ei.value).startswith(f"{pkg / 'broken.py'}:3: mpy-cross: SyntaxError")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_natmods_for_the_board_arch(tmp_path: Path) -> None:
    nat = tmp_path / "natmods"
    for arch in ("xtensawin", "rv32imc"):
        (nat / arch).mkdir(parents=True)
        src = tmp_path / "nm.py"
        src.write_text("import micropython\n@micropython.native\ndef f(x):\n    return x + 1\n")
        subprocess.run(["mpy-cross", f"-march={arch}", "-o", str(nat / arch / "fastcrc.mpy"), str(src)], check=True)
    b = build_bundle(str(BOARD), tmp_path / "out", device_pkg=PKG, natmod_dir=nat, revision="x")
    got = (tmp_path / "out" / "fastcrc.mpy").read_bytes()
    assert got == (nat / "xtensawin" / "fastcrc.mpy").read_bytes()
    assert "fastcrc.mpy" in [f.path for f in b.files]
    # a natmod built for the wrong arch is refused
    (nat / "xtensawin" / "fastcrc.mpy").write_bytes((nat / "rv32imc" / "fastcrc.mpy").read_bytes())
    with pytest.raises(FieldlinkError, match="built for rv32imc"):
        build_bundle(str(BOARD), tmp_path / "out2", device_pkg=PKG, natmod_dir=nat, revision="x")


def test_sim_is_never_bundled(tmp_path: Path) -> None:
    from fieldlink_host.paths import SIM_DIR

    with pytest.raises(FieldlinkError, match="never be bundled"):
        build_bundle(str(BOARD), tmp_path / "o", device_pkg=PKG, app_dir=SIM_DIR, revision="x")
    b = build_bundle(str(BOARD), tmp_path / "real", revision="x")  # the real device package
    names = {f.path.split("/")[0] for f in b.files}
    assert "fieldlink" in names and not names & {"machine.mpy", "espnow.mpy", "esp32.mpy", "network.mpy"}


def test_load_bundle_detects_tampering(tmp_path: Path) -> None:
    _build(tmp_path / "b")
    load_bundle(tmp_path / "b")
    (tmp_path / "b" / "extra.py").write_text("x")
    with pytest.raises(FieldlinkError, match="not listed"):
        load_bundle(tmp_path / "b")


def test_refuses_to_replace_a_non_bundle_dir(tmp_path: Path) -> None:
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("x")
    with pytest.raises(FieldlinkError, match="refusing"):
        _build(tmp_path / "precious")


def test_cli_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["build", "--board", str(BOARD), "--app", str(FIX / "app"), "--out", str(tmp_path / "c"),
               "--rules", str(FIX / "rules" / "demo.rules")])
    out = capsys.readouterr().out
    assert rc == 0 and "files" in out and "fixture-node" in out
    assert (tmp_path / "c" / "rules" / "demo.rules").exists()
    rc = main(["build", "--board", "no-such-board", "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("fieldlink: error: unknown board") and "Traceback" not in err
