"""Power cuts during an app update and its boot confirmation: a MicroPython process runs the whole
update (begin, stream, finish, loader boot, self-test, confirm) and is SIGKILLed at each of its
file-system steps in turn (tests/system/ota_powercut_child.py). After every cut the board boots like a
device (loader slot selection, on_boot) and must run a complete, hash-valid bundle (old or new) with
the store intact and the counter consistent; then the same update runs to the end and the new version
is active with its counter stored."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from fieldlink_host.paths import micropython_binary

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("ota_powercut_child.py")

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    parts = [str(ROOT / "tests" / "device"), str(ROOT / "device" / "sim"), str(ROOT / "device"), ".frozen"]
    return dict(os.environ, MICROPYPATH=os.pathsep.join(parts))


def _run(*args: str) -> str:
    proc = subprocess.run([micropython_binary(), str(CHILD), *args], capture_output=True, text=True, env=_env(),
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _cut(root: Path, k: int, mode: str = "update", *args: str) -> str:
    """Run the update (mode, with args after the root) and SIGKILL it at its k-th step; returns the step's
    name."""
    proc = subprocess.Popen([micropython_binary(), str(CHILD), mode, str(root), *args, str(k)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"@at {k} "), line + (proc.stderr.read() if proc.stderr else "")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return line.split(" ", 2)[2].strip()


def _line(out: str, tag: str) -> dict[str, object]:
    for ln in out.splitlines():
        if ln.startswith(tag + " "):
            return dict(json.loads(ln[len(tag) + 1:]))
    raise AssertionError(f"no {tag} in {out}")


def test_power_cut_at_every_step_of_update_and_confirm(tmp_path: Path) -> None:
    template = tmp_path / "template"
    template.mkdir()
    _run("setup", str(template))
    probe = tmp_path / "probe"
    shutil.copytree(template, probe)
    steps = int(_run("update", str(probe)).split("@steps ")[1].split()[0])
    assert steps > 20  # mkdirs, appends, atomic writes and renames of the update and its confirmation
    seen_new = seen_old = 0
    for k in range(1, steps + 1):
        root = tmp_path / f"cut{k}"
        shutil.copytree(template, root)
        step = _cut(root, k)
        out = _run("recover", str(root))
        st = _line(out, "@state")
        where = f"cut at step {k} ({step}): {st}"
        assert st["version"] in ("1.0", "2.0"), where  # a complete, hash-valid bundle boots
        assert st["keep"] == "relay state: fan on", where  # the store survived
        assert not st["trial"] and st["trial_file"] is None, where  # no half-finished trial
        if st["version"] == "2.0":
            seen_new += 1
            assert st["counter"] == 2 and st["main"] == "main v2", where
        else:
            seen_old += 1
            assert st["counter"] == 1 and st["main"] == "main v0", where  # never lower than before
        fin = _line(out, "@final")
        assert fin["version"] == "2.0" and fin["counter"] == 2 and fin["main"] == "main v2", (where, out)
        assert fin["keep"] == "relay state: fan on"
    assert seen_old and seen_new  # cuts before and after the switch were both exercised


def _fw_check(out: str, where: str) -> str:
    st = _line(out, "@state")
    assert st["keep"] == "relay state: fan on" and not st["trial"], (where, st)
    if st["running"] == "ota_1":  # the new image, complete and confirmed, with its counter
        assert st["version"] == "2.0" and st["counter"] == 2 and st["state"] == "valid", (where, st)
    else:  # the old image, untouched, counter not lowered
        assert st["running"] == "ota_0" and st["version"] == "1.0" and st["counter"] == 1, (where, st)
    fin = _line(out, "@final")
    assert fin["running"] == "ota_1" and fin["version"] == "2.0" and fin["counter"] == 2, (where, out)
    assert fin["state"] == "valid" and not fin["trial"]
    assert fin["dirty"] == 0, (where, "programmed flash that was not erased")
    return str(st["running"])


def test_power_cut_at_every_step_of_a_firmware_update_and_its_confirmation(tmp_path: Path) -> None:
    template = tmp_path / "template"
    template.mkdir()
    _run("fwsetup", str(template))
    probe = tmp_path / "probe"
    shutil.copytree(template, probe)
    n_update = int(_run("fwupdate", str(probe)).split("@steps ")[1].split()[0])
    n_confirm = int(_run("fwconfirm", str(probe)).split("@steps ")[1].split()[0])
    assert n_update >= 6 and n_confirm >= 2  # flash blocks, progress records, trial, set_boot; mark valid, record
    seen = []
    rebuilt = 0
    for k in range(1, n_update + 1):
        root = tmp_path / f"u{k}"
        shutil.copytree(template, root)
        step = _cut(root, k, "fwupdate")
        out = _run("fwrecover", str(root))
        seen.append(_fw_check(out, f"update cut {k} ({step})"))
        rebuilt += int(str(_line(out, "@final")["rebuilt"]))
        if step.startswith("flash ota_1 piece "):  # cut before piece N: pieces 0..N-1 are kept
            resume = int(out.split("@resume ")[1].split()[0])
            assert resume == 512 * int(step.split()[-1]), (step, resume)
    assert rebuilt, "no cut left a programmed, unrecorded piece behind (the sector rebuild never ran)"
    for k in range(1, n_confirm + 1):
        root = tmp_path / f"c{k}"
        shutil.copytree(template, root)
        _run("fwupdate", str(root))
        step = _cut(root, k, "fwconfirm")
        seen.append(_fw_check(_run("fwrecover", str(root)), f"confirm cut {k} ({step})"))
    assert "ota_0" in seen and "ota_1" in seen, seen  # cuts before and after the switch were both exercised


@pytest.mark.parametrize("kind", ["rules", "keys"])
def test_power_cut_at_every_step_of_a_rules_or_keys_update(tmp_path: Path, kind: str) -> None:
    """A rules or keys update activates without a reboot: after a cut at any step the board runs the
    old program / trusts the old keys with the old counter, or the new ones with the new counter,
    never a program its envelope does not sign; then the same update completes."""
    template = tmp_path / "template"
    template.mkdir()
    _run("rksetup", str(template), kind)
    probe = tmp_path / "probe"
    shutil.copytree(template, probe)
    steps = int(_run("rkupdate", str(probe), kind).split("@steps ")[1].split()[0])
    assert steps >= 4  # session record, stage appends, envelope/rules or the key record, cleanup
    seen = set()
    for k in range(1, steps + 1):
        root = tmp_path / f"cut{k}"
        shutil.copytree(template, root)
        step = _cut(root, k, "rkupdate", kind)
        out = _run("rkrecover", str(root), kind)
        st, fin = _line(out, "@state"), _line(out, "@final")
        where = f"{kind} cut at step {k} ({step}): {st}"
        assert st["keep"] == "relay state: fan on", where
        new = st["counter"] == 2
        assert st["counter"] in (None, 2) and (st["version"] == "2.0") == new, where
        if kind == "rules":
            # the node runs either the bundled program or exactly the new signed one (its envelope matches)
            assert st["runs"] in ("bundled", fin["new"]), where
            assert (st["runs"] == fin["new"]) or not new, where
            assert fin["runs"] == fin["new"], (where, out)
        else:
            runs, fin_runs = st["runs"], fin["runs"]
            assert isinstance(runs, list) and isinstance(fin_runs, list), where
            assert len(runs) == (2 if new else 1) and not st["retired"], where
            assert len(fin_runs) == 2, (where, out)
        assert fin["counter"] == 2 and fin["version"] == "2.0", (where, out)
        if "@refused " in out:  # only an update that was already complete is refused again
            assert new and "@refused replay" in out, (where, out)
        seen.add(new)
    assert seen == {False, True}  # cuts before and after the activation were both exercised
