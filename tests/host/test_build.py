"""fieldlink build: golden manifest for the fixture tree (checked against independent sources),
reproducibility, mpy-cross errors with file:line, natmods, the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
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
    # GPIO48 does not exist on the C6 and GPIO4 is a C6 strapping pin (boards check)
    c6 = c6.replace("status_led = 48", "status_led = 10").replace("pin = 4", "pin = 3")
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
    assert a == b and len(a) == 11 and ".fieldlink-build" in a  # 10 bundle files + the build's marker
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


# ---------------------------------------------------------------------------------- generated main, rules

def _pkg_with_main(tmp: Path) -> Path:
    """The fixture package plus a ``main`` module whose run() says it ran (fieldlink.main stand-in)."""
    pkg = tmp / "pkg" / "fieldlink"
    shutil.copytree(PKG, pkg)
    (pkg / "main.py").write_text("def run():\n    print('fieldlink.main.run called', hello_from())\n\n\n"
                                 "def hello_from():\n    import fieldlink\n    return fieldlink.hello()\n")
    return pkg


def test_generated_main_starts_fieldlink_main_when_the_app_has_none(tmp_path: Path) -> None:
    pkg = _pkg_with_main(tmp_path)
    b = build_bundle(str(BOARD), tmp_path / "b", device_pkg=pkg, revision="x")
    paths = [f.path for f in b.files]
    assert "main.mpy" in paths and "fieldlink/main.mpy" in paths and "main.py" not in paths
    # the slot's main module runs fieldlink.main.run() (bytecode .mpy, so the unix port runs it)
    env = dict(os.environ, MICROPYPATH=str(tmp_path / "b"))
    proc = subprocess.run(["micropython", "-c", "import main"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "fieldlink.main.run called fieldlink fixture 9.8.7"
    # compiled like everything else: same mpy-cross header, source named relative to the bundle
    data = (tmp_path / "b" / "main.mpy").read_bytes()
    assert data[:2] == b"M\x06" and b"main.py" in data and str(tmp_path).encode() not in data
    # reproducible: a rebuild is byte-identical
    build_bundle(str(BOARD), tmp_path / "b2", device_pkg=pkg, revision="x")
    assert _tree(tmp_path / "b") == _tree(tmp_path / "b2")
    # an app with its own main.py keeps it (that is the fixture app's main.mpy, not the generated one)
    ba = build_bundle(str(BOARD), tmp_path / "ba", device_pkg=pkg, app_dir=FIX / "app", revision="x")
    _build(tmp_path / "fx")
    assert (tmp_path / "ba" / "main.mpy").read_bytes() == (tmp_path / "fx" / "main.mpy").read_bytes() != data
    assert len([f for f in ba.files if f.path == "main.mpy"]) == 1
    # a device package without a main module gets no generated main (nothing to start)
    assert "main.mpy" not in [f.path for f in build_bundle(str(BOARD), tmp_path / "nm", device_pkg=PKG,
                                                          revision="x").files]


def test_real_package_bundle_has_the_generated_main(tmp_path: Path) -> None:
    b = build_bundle("sim-node", tmp_path / "b", revision="x")
    paths = {f.path for f in b.files}
    assert {"main.mpy", "fieldlink/main.mpy", "board.json"} <= paths
    # the generated source names fieldlink.main.run
    data = (tmp_path / "b" / "main.mpy").read_bytes()
    assert b"fieldlink.main" in data and b"run" in data


def test_rules_yaml_is_compiled_for_the_board(tmp_path: Path) -> None:
    from fieldlink.rules.verify import verify
    from fieldlink_host.rules.compiler import compile_file

    src = ROOT / "examples" / "greenhouse.rules.yaml"
    b = build_bundle("sim-node", tmp_path / "b", device_pkg=PKG, rules=[src], revision="x")
    blob = (tmp_path / "b" / "rules" / "greenhouse.bin").read_bytes()
    assert "rules/greenhouse.bin" in [f.path for f in b.files]
    assert blob == compile_file(src, board="sim-node").program
    prog = verify(blob)  # the device verifier accepts it
    assert blob[:4] == b"FLRV" and len(prog.rule_names) == 7 and "vent_hot" in prog.rule_names
    # reproducible
    build_bundle("sim-node", tmp_path / "b2", device_pkg=PKG, rules=[src], revision="x")
    assert _tree(tmp_path / "b") == _tree(tmp_path / "b2")


def test_rules_compile_errors_and_board_mismatch(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("board: sim-node\nrules:\n  - name: r\n    when: sht2.temperature > 3\n    then:\n      - on: fan\n")
    with pytest.raises(FieldlinkError) as ei:
        build_bundle("sim-node", tmp_path / "out", device_pkg=PKG, rules=[bad], revision="x")
    msg = str(ei.value)
    assert msg.startswith(f"{bad}:4:11: ") and "sht2" in msg, msg
    assert not (tmp_path / "out").exists()  # nothing written
    # rules written for sim-node, bundle for fixture-node
    with pytest.raises(FieldlinkError) as ei:
        build_bundle(str(BOARD), tmp_path / "out", device_pkg=PKG, rules=[ROOT / "examples" / "greenhouse.rules.yaml"],
                     revision="x")
    assert ":3:8: " in str(ei.value) and "'sim-node'" in str(ei.value) and "'fixture-node'" in str(ei.value)
    # a .yml without board: compiled for the bundle's board
    ok = tmp_path / "fan.yml"
    ok.write_text("rules:\n  - name: r\n    when: sht.temperature > 3\n    then:\n      - on: fan\n")
    build_bundle(str(BOARD), tmp_path / "ok", device_pkg=PKG, rules=[ok], revision="x")
    assert (tmp_path / "ok" / "rules" / "fan.bin").read_bytes()[:4] == b"FLRV"
    with pytest.raises(FieldlinkError, match="rules file not found"):
        build_bundle(str(BOARD), tmp_path / "nf", device_pkg=PKG, rules=[tmp_path / "missing.yaml"], revision="x")


def test_compiled_rules_bin_is_verified_and_copied_as_is(tmp_path: Path) -> None:
    from fieldlink_host.build import rules_bundle_name
    from fieldlink_host.rules.compiler import compile_file

    prog = compile_file(ROOT / "examples" / "greenhouse.rules.yaml").program
    good = tmp_path / "gh.bin"
    good.write_bytes(prog)
    build_bundle("sim-node", tmp_path / "b", device_pkg=PKG, rules=[good], revision="x")
    assert (tmp_path / "b" / "rules" / "gh.bin").read_bytes() == prog
    bad = tmp_path / "broken.bin"
    bad.write_bytes(prog[:-1] + bytes([prog[-1] ^ 1]))  # CRC-32 off by one bit
    with pytest.raises(FieldlinkError, match="not a valid rules program") as ei:
        build_bundle("sim-node", tmp_path / "c", device_pkg=PKG, rules=[bad], revision="x")
    assert str(ei.value).startswith(str(bad))
    assert not (tmp_path / "c").exists()
    assert rules_bundle_name(Path("x/greenhouse.rules.yaml")) == "rules/greenhouse.bin"
    assert rules_bundle_name(Path("a.yml")) == "rules/a.bin"
    assert rules_bundle_name(Path("prog.bin")) == "rules/prog.bin"
    assert rules_bundle_name(Path("demo.rules")) == "rules/demo.rules"
    with pytest.raises(FieldlinkError, match="no stem"):
        rules_bundle_name(Path(".rules.yaml"))


def test_cli_build_compiles_yaml_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["build", "--board", "sim-node", "--rules", str(ROOT / "examples" / "greenhouse.rules.yaml"),
               "--arch", "x64", "--out", str(tmp_path / "c")])
    out = capsys.readouterr().out
    assert rc == 0 and "(x64)" in out
    assert (tmp_path / "c" / "rules" / "greenhouse.bin").read_bytes()[:4] == b"FLRV"
    assert (tmp_path / "c" / "main.mpy").is_file()
    bad = tmp_path / "bad.yaml"
    bad.write_text("board: sim-node\nrules:\n  - name: r\n    when: sht.temperature >\n    then:\n      - on: fan\n")
    rc = main(["build", "--board", "sim-node", "--rules", str(bad), "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert rc == 1 and f"{bad}:4:" in err and "Traceback" not in err
