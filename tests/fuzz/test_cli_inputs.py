"""Every file and argument the CLI reads, made hostile: each case must end with exit code != 0 and exactly
one stderr line ``fieldlink: error: ...`` (no traceback), or a clean success. Cases run in-process
through the real entry point (``fieldlink_host.cli.main``), a few also as a real process."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fieldlink_host.cli import main

pytestmark = pytest.mark.fuzz

ROOT = Path(__file__).resolve().parents[2]
BOARDS = ROOT / "host" / "fieldlink_host" / "boards"
RULES = ROOT / "examples" / "greenhouse.rules.yaml"


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, needle: str = "") -> None:
    assert rc != 0, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fieldlink: error: "), err
    assert "Traceback" not in err
    assert needle.lower() in err.lower(), (needle, err)


def assert_clean(rc: int, err: str) -> None:
    """Either a clean success or the documented one-line error."""
    if rc == 0:
        assert "Traceback" not in err
    else:
        assert_one_line_error(rc, err)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "somedir").mkdir()
    os.mkfifo(tmp_path / "fifo")  # opening it for reading would block forever
    (tmp_path / "existing").write_text("x\n")
    (tmp_path / "junk.bin").write_bytes(bytes(random.Random(1).randrange(256) for _ in range(400)) + b"\x00")
    (tmp_path / "latin1.csv").write_bytes("time_s,sht.temperature\n0,21\xb0\n".encode("latin-1"))
    (tmp_path / "bin.toml").write_bytes(b"\x00\x01[board]\nname = 1\n")
    (tmp_path / "latin1.toml").write_bytes('[board]\nname = "caf\xe9"\n'.encode("latin-1"))
    (tmp_path / "deep.toml").write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    (tmp_path / "deep.yaml").write_text("x: " + "[" * 10_000 + "]" * 10_000 + "\n")
    (tmp_path / "deepmap.yaml").write_text("".join("  " * i + f"k{i}:\n" for i in range(300)) + "  " * 300 + "v: 1\n")
    (tmp_path / "parens.yaml").write_text(
        "board: sim-node\nrules:\n  - name: a\n    when: \"" + "(" * 130 + "sht.temperature > 1" + ")" * 130
        + "\"\n    then: [{on: fan}]\n")
    (tmp_path / "longexpr.yaml").write_text(
        "board: sim-node\nrules:\n  - name: a\n    when: \"" + " + ".join(["sht.temperature"] * 900) + " > 1\"\n"
        "    then: [{on: fan}]\n")
    (tmp_path / "nots.yaml").write_text(
        "board: sim-node\nrules:\n  - name: a\n    when: \"" + "not " * 500 + "sht.temperature > 1\"\n"
        "    then: [{on: fan}]\n")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "good.csv").write_text("time_s,sht.temperature\n0,21\n60,30\n")
    return tmp_path


CASES: list[tuple[list[str], str]] = [
    (["rules", "compile", str(RULES), "-o", "{d}/somedir"], "is a directory"),
    (["rules", "compile", str(RULES), "-o", "/no/such/dir/x.bin"], "does not exist"),
    (["rules", "compile", str(RULES), "-o", "{d}/existing/x.bin"], "not a directory"),
    (["rules", "simulate", str(RULES), "--csv", "{d}/junk.bin"], "binary"),
    (["rules", "simulate", str(RULES), "--csv", "{d}/latin1.csv"], "not UTF-8"),
    (["rules", "simulate", str(RULES), "--csv", "{d}/somedir"], "is a directory"),
    (["rules", "simulate", str(RULES), "--csv", "{d}/nope.csv"], "No such file"),
    (["rules", "simulate", str(RULES), "--csv", "{d}/good.csv", "-o", "{d}/somedir"], "is a directory"),
    (["rules", "simulate", str(RULES), "--csv", "{d}/good.csv", "--html", "/no/dir/r.html"], "does not exist"),
    (["rules", "simulate", str(RULES), "--csv", "{d}/good.csv", "--start", "25:99"], "start"),
    (["rules", "check", "{d}/junk.bin"], "binary"),
    (["rules", "check", "{d}/deep.yaml", "--board", "sim-node"], "nested"),
    (["rules", "check", "{d}/deepmap.yaml", "--board", "sim-node"], "nested"),
    (["rules", "check", "{d}/parens.yaml"], "nested"),
    (["rules", "check", "{d}/longexpr.yaml"], ""),
    (["rules", "check", "{d}/nots.yaml"], "nested"),
    (["rules", "check", "{d}/empty.yaml", "--board", "sim-node"], ""),
    (["rules", "check", "{d}/list.yaml", "--board", "sim-node"], ""),
    (["rules", "check", "{d}/somedir"], "is a directory"),
    (["rules", "check", "{d}/fifo"], "not a regular file"),
    (["boards", "check", "/dev/zero"], "not a regular file"),
    (["rules", "disasm", "{d}/junk.bin"], ""),
    (["rules", "disasm", "{d}/somedir.bin"], "No such file"),
    (["boards", "check", "{d}/bin.toml"], "binary"),
    (["boards", "check", "{d}/latin1.toml"], "not UTF-8"),
    (["boards", "check", "{d}/deep.toml"], "nested"),
    (["boards", "check", "{d}/somedir"], "is a directory"),
    (["boards", "check"], "needs FILE"),
    (["boards", "show"], "needs"),
    (["keys", "new", "--out", "{d}/existing"], "must be a directory"),
    (["keys", "new", "--out", "/proc/fieldlink-keys"], "cannot"),
    (["keys", "new"], "--out"),
    (["keys", "show"], "FILE"),
    (["keys", "show", "{d}/junk.bin"], "key"),
    (["keys", "show", "{d}/somedir"], "is a directory"),
    (["build", "--board", "sim-node", "--out", "/proc/x"], ""),
    (["build", "--board", "{d}/bin.toml"], "binary"),
    (["sim", "--seconds", "nan"], "--seconds"),
    (["sim", "--seconds", "-1"], "--seconds"),
    (["sim", "--seconds", "inf"], "--seconds"),
    (["sim", "--loss", "2"], "--loss"),
    (["sim", "--nodes", "-1", "--seconds", "1"], "--nodes"),
    (["sim", "--workdir", "{d}/existing", "--seconds", "1"], ""),
    (["board", "--port-file", "/no/such/dir/p", "--dir", "{d}/vb"], "does not exist"),
    (["board", "--micropython", "/nonexistent", "--dir", "{d}/vb"], "not found"),
    (["monitor", "--port", "{d}/nope-tty"], "cannot open"),
    (["monitor", "--port", "{d}/nope-tty", "--seconds", "nan"], "--seconds"),
    (["deploy", "--port", "{d}/nope-tty", "--bundle", "{d}/somedir"], "not a bundle"),
    (["deploy", "--port", "{d}/nope-tty"], "--bundle"),
    (["sign", "{d}/nope", "--key", "{d}/existing"], "not found"),
    (["verify", "{d}/existing", "--pub", "{d}/junk.bin"], "not signed"),
    (["image", "--board", "sim-node", "--firmware", "{d}/somedir"], "is a directory"),
    (["image", "--board", "sim-node", "--firmware", "{d}/junk.bin"], ""),
    (["flash", "--port", "x", "--image", "{d}/nope.bin", "--dry-run"], ""),
    (["frobnicate"], "invalid choice"),
    (["rules", "frob", "x"], "invalid choice"),
    (["rules"], "required"),
    (["sim", "--seconds", "x"], "invalid float"),
]


@pytest.mark.parametrize(("argv", "needle"), CASES, ids=[" ".join(a[:3]) for a, _ in CASES])
def test_bad_input_is_one_line(argv: list[str], needle: str, files: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(files)
    rc, _out, err = run_cli([a.replace("{d}", str(files)) for a in argv], capsys)
    assert_one_line_error(rc, err, needle)


# ------------------------------------------------------------------------------- board TOML mutations

VALUES = ['""', '"x"', "-1", "0", "3", "22", "48", "49", "1e9", "3.5", "true", "[]", "[1, 2]", "{}",
          '{a = 1}', '"i2c9"', '"uart1"', "0x44", "99999999999", '"é"', "[[1]]", '"a b"']


def _mutants(text: str, n: int, seed: int) -> list[str]:
    r = random.Random(seed)
    lines = text.splitlines()
    slots = [i for i, ln in enumerate(lines) if " = " in ln and not ln.lstrip().startswith("#")]
    out = []
    for _ in range(n):
        mutated = list(lines)
        for _ in range(1 + r.randrange(2)):
            i = r.choice(slots)
            key = mutated[i].split(" = ", 1)[0]
            mutated[i] = f"{key} = {r.choice(VALUES)}"
        if r.randrange(5) == 0:  # drop a line or duplicate a table
            del mutated[r.choice(slots)]
        out.append("\n".join(mutated) + "\n")
    return out


@pytest.mark.parametrize("board", ["sim-node", "lilygo-t-relay-s3", "esp32-c6-devkitc-1"])
def test_board_toml_mutations(board: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (BOARDS / f"{board}.toml").read_text()
    errors = 0
    for i, m in enumerate(_mutants(text, 60, hash(board) & 0xFFFF)):
        p = tmp_path / f"m{i}.toml"
        p.write_text(m)
        rc, out, err = run_cli(["boards", "check", str(p)], capsys)
        assert_clean(rc, err)
        if rc:
            errors += 1
            assert str(p) in err  # the error names the file
        else:
            assert out.startswith(f"{p}: ok")
    assert errors > 30  # most mutations break a rule: the validator is not a no-op


BOARD_RULES = [  # (patch to sim-node.toml, the rule the error must name)
    (("pin = 2\n", "pin = 1\n"), "already used by relays[0].pin"),
    (("pin = 1\n", "pin = 8\n"), "already used by i2c[0].sda"),
    (("pin = 1\n", "pin = 48\n"), "already used by pins.status_led"),
    (("pin = 1\n", "pin = 22\n"), "does not exist on esp32s3"),
    (("pin = 1\n", "pin = 30\n"), "SPI flash"),
    (("pin = 1\n", "pin = 19\n"), "USB"),
    (("pin = 1\n", "pin = 43\n"), "UART0 console"),
    (("pin = 1\n", "pin = 46\n"), "strapping pin"),
    (("pin = 4\n", "pin = 12\n"), "not an ADC1 pin"),
    (("pin = 4\n", "pin = 60\n"), "does not exist"),
    (('bus = "i2c0"\naddress = 0x44', 'bus = "i2c7"\naddress = 0x44'), "not defined in [[i2c]]"),
    (('name = "fan"', 'name = ""'), "names"),
    (("heartbeat_s = 30", 'heartbeat_s = "30"'), "option 'heartbeat_s'"),
    (("telemetry_batch = 4", "telemetry_batch = 4.5"), "option 'telemetry_batch'"),
    (("[[i2c]]\nid = 0", "[[i2c]]\nid = 0\nscl = 10\nsda = 11\n[[i2c]]\nid = 0"), "duplicate I2C bus id"),
    (("[[i2c]]\nid = 0", "[[i2c]]\nid = 5"), "not an I2C controller"),
    (("status_led = 48", "status_led = 9"), "already used by"),
    (("status_led = 48", 'status_led = "48"'), "GPIO number"),
    (("max_on_s = 3600", "max_on_s = -5"), "max_on_s"),
]


@pytest.mark.parametrize(("patch", "rule"), BOARD_RULES, ids=[r for _, r in BOARD_RULES])
def test_board_rules_are_named(patch: tuple[str, str], rule: str, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    text = (BOARDS / "sim-node.toml").read_text()
    assert patch[0] in text
    p = tmp_path / "b.toml"
    p.write_text(text.replace(*patch, 1))
    rc, _, err = run_cli(["boards", "check", str(p)], capsys)
    assert_one_line_error(rc, err, rule)


def test_board_without_partitions_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (BOARDS / "sim-gateway.toml").read_text()
    head, _, rest = text.partition("[[partitions]]")
    p = tmp_path / "b.toml"
    p.write_text(head + rest[rest.index("[pins]"):])
    rc, _, err = run_cli(["boards", "check", str(p)], capsys)
    assert_one_line_error(rc, err, "partition table")


def test_shipped_boards_pass_the_pin_rules(capsys: pytest.CaptureFixture[str]) -> None:
    for p in sorted(BOARDS.glob("*.toml")):
        rc, out, err = run_cli(["boards", "check", str(p)], capsys)
        assert rc == 0 and not err and "ok" in out, (p, err)


# ------------------------------------------------------------------------------- rules YAML and CSV

def test_rules_yaml_mutations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = RULES.read_text()
    r = random.Random(7)
    tokens = ["(", ")", "[", "]", "{", "}", ":", "-", "'", '"', "#", "\t", "\x00", "é", "&a", "*a", "!!python/object", " and ",
              " hyst ", "99999999999", "1e400", "nan", "10d", "-", "avg(", ",", "\n  ", "\n- "]
    for i in range(50):
        chars = list(text)
        for _ in range(1 + r.randrange(4)):
            chars.insert(r.randrange(len(chars)), r.choice(tokens))
        p = tmp_path / f"r{i}.yaml"
        p.write_text("".join(chars))
        rc, _, err = run_cli(["rules", "check", str(p), "--board", "sim-node"], capsys)
        assert_clean(rc, err)


def test_csv_mutations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = (ROOT / "tests" / "fixtures" / "rules" / "greenhouse.csv").read_text().splitlines()[:40]
    r = random.Random(11)
    junk = ["", ",", ",,", "nan", "inf", "-inf", "1e999", "x", "99999999999999", "-0", "  ", "\"", "time_ms", "1,2,3,4,5"]
    for i in range(30):
        rows = list(csv)
        for _ in range(1 + r.randrange(3)):
            j = r.randrange(len(rows))
            cells = rows[j].split(",")
            cells[r.randrange(len(cells))] = r.choice(junk)
            rows[j] = ",".join(cells)
        p = tmp_path / f"c{i}.csv"
        p.write_text("\n".join(rows) + "\n")
        rc, _, err = run_cli(["rules", "simulate", str(RULES), "--csv", str(p)], capsys)
        assert_clean(rc, err)


def test_rules_bytecode_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = random.Random(5)
    for i in range(30):
        p = tmp_path / f"p{i}.bin"
        p.write_bytes(b"FLRV\x01\x00" + bytes(r.randrange(256) for _ in range(r.randrange(100))))
        for action in ("disasm", "simulate"):
            rc, _, err = run_cli(["rules", action, str(p), "--csv", str(tmp_path / "none.csv")], capsys)
            assert_one_line_error(rc, err)


# ------------------------------------------------------------------------------- bundles, keys, counters

def _fake_bundle(root: Path, board: str = "sim-node") -> Path:
    root.mkdir(parents=True)
    data = b"print('hi')\n"
    (root / "main.py").write_bytes(data)
    manifest = {"format": "fieldlink-bundle/1", "board": board, "chip": "esp32s3", "arch": "xtensawin",
                "version": "1.0.0", "source_revision": "x", "mpy_cross": "x", "opt_level": 0,
                "files": [{"path": "main.py", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}],
                "total_size": len(data)}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return root


MANIFEST_EDITS: list[Callable[[dict], object]] = [
    lambda m: m.pop("files"), lambda m: m.update(files="x"), lambda m: m.update(files=[1]),
    lambda m: m.update(files=[{"path": "main.py"}]), lambda m: m["files"][0].update(size="12"),
    lambda m: m["files"][0].update(size=-1), lambda m: m["files"][0].update(path="../etc/passwd"),
    lambda m: m["files"][0].update(path="/abs"), lambda m: m["files"][0].update(path=""),
    lambda m: m["files"][0].update(sha256="zz"), lambda m: m.update(board=5), lambda m: m.pop("board"),
    lambda m: m.update(version=None), lambda m: m.update(total_size=1), lambda m: m.update(format=1),
    lambda m: m.update(opt_level=True), lambda m: m["files"].append(dict(m["files"][0])),
    lambda m: m["files"][0].update(path="manifest.json"),
]


@pytest.mark.parametrize("edit", range(len(MANIFEST_EDITS)))
def test_hand_edited_manifest(edit: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = _fake_bundle(tmp_path / "b")
    m = json.loads((b / "manifest.json").read_text())
    MANIFEST_EDITS[edit](m)
    (b / "manifest.json").write_text(json.dumps(m))
    rc, _, err = run_cli(["keys", "new", "--out", str(tmp_path / "k")], capsys)
    assert rc == 0
    key, pub = tmp_path / "k" / "fieldlink.key", tmp_path / "k" / "fieldlink.pub"
    for argv in (["sign", str(b), "--key", str(key)], ["verify", str(b), "--pub", str(pub)],
                 ["deploy", "--port", str(tmp_path / "no-tty"), "--bundle", str(b)]):
        rc, _, err = run_cli(argv, capsys)
        assert_one_line_error(rc, err, "manifest")


def test_manifest_nested_100000_deep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = _fake_bundle(tmp_path / "b")
    (b / "manifest.json").write_text('{"format": "fieldlink-bundle/1", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    rc, _, err = run_cli(["deploy", "--port", "/nonexistent", "--bundle", str(b)], capsys)
    assert_one_line_error(rc, err, "nested")


def test_counter_file_is_never_reset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = _fake_bundle(tmp_path / "b")
    assert run_cli(["keys", "new", "--out", str(tmp_path / "k")], capsys)[0] == 0
    key = tmp_path / "k" / "fieldlink.key"
    counter = tmp_path / "k" / "fieldlink.key.counter"
    assert run_cli(["sign", str(b), "--key", str(key)], capsys)[0] == 0
    assert counter.read_text() == "1\n"
    assert run_cli(["sign", str(b), "--key", str(key), "--counter", "7"], capsys)[0] == 0
    assert run_cli(["sign", str(b), "--key", str(key), "--counter", "3"], capsys)[0] == 0
    assert counter.read_text() == "7\n"  # never goes backwards
    for bad in ("12x", "", "-3", "1e3", "99999999999", "\x00"):
        counter.write_text(bad)
        rc, _, err = run_cli(["sign", str(b), "--key", str(key)], capsys)
        assert_one_line_error(rc, err, "counter file")
        assert counter.read_text() == bad  # left as it was for the user to fix
    counter.write_text("41\n")
    assert run_cli(["sign", str(b), "--key", str(key)], capsys)[0] == 0
    assert counter.read_text() == "42\n"
    assert json.loads((b / "ota.json").read_text())["counter"] == 42
    assert not [p for p in (tmp_path / "k").iterdir() if p.name.endswith(".tmp")]


def test_keys_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["keys", "new", "--out", str(tmp_path)], capsys)[0] == 0
    before = (tmp_path / "fieldlink.key").read_bytes()
    rc, _, err = run_cli(["keys", "new", "--out", str(tmp_path)], capsys)
    assert_one_line_error(rc, err, "refusing to overwrite")
    assert (tmp_path / "fieldlink.key").read_bytes() == before
    assert (tmp_path / "fieldlink.key").stat().st_mode & 0o777 == 0o600


def test_build_out_refuses_foreign_directories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "manifest.json").write_text("{}")
    (mine / "notes.txt").write_text("precious")
    rc, _, err = run_cli(["build", "--board", "sim-node", "--out", str(mine)], capsys)
    assert_one_line_error(rc, err, "refusing to replace")
    assert (mine / "notes.txt").read_text() == "precious"
    f = tmp_path / "file"
    f.write_text("x")
    rc, _, err = run_cli(["build", "--board", "sim-node", "--out", str(f)], capsys)
    assert_one_line_error(rc, err, "not a directory")


def test_image_bundle_that_does_not_fit(tmp_path: Path) -> None:
    import dataclasses

    from fieldlink_host.boards import load_board
    from fieldlink_host.build import load_bundle
    from fieldlink_host.errors import FieldlinkError
    from fieldlink_host.image import build_fs_image

    b = _fake_bundle(tmp_path / "b")
    big = os.urandom(40_000)
    (b / "main.py").write_bytes(big)
    m = json.loads((b / "manifest.json").read_text())
    m["files"][0].update(size=len(big), sha256=hashlib.sha256(big).hexdigest())
    m["total_size"] = len(big)
    (b / "manifest.json").write_text(json.dumps(m))
    board = load_board("sim-node")
    small = tuple(dataclasses.replace(p, size=0x8000) if p.name == "vfs" else p for p in board.partitions)
    with pytest.raises(FieldlinkError, match="does not fit"):
        build_fs_image(dataclasses.replace(board, partitions=small), load_bundle(b))


# ------------------------------------------------------------------------------- a real process

@pytest.mark.parametrize("argv", [["rules", "check", "{d}/parens.yaml"], ["boards", "check", "{d}/bin.toml"],
                                  ["sim", "--seconds", "nan"]])
def test_real_process_one_line(argv: list[str], files: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "fieldlink_host", *[a.replace("{d}", str(files)) for a in argv]],
                          capture_output=True, text=True, timeout=120, cwd=files)
    assert proc.returncode == 1
    assert re.fullmatch(r"fieldlink: error: [^\n]+\n", proc.stderr), proc.stderr


def test_board_with_an_interpreter_that_exits_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "fake-micropython"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    rc, _, err = run_cli(["board", "--micropython", str(fake), "--dir", str(tmp_path / "vb"),
                          "--port-file", str(tmp_path / "port")], capsys)
    assert_one_line_error(rc, err, "exits right after starting")
    assert not (tmp_path / "port").exists()
