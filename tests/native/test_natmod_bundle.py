"""`fieldlink build` bundles the natmod built for the board's arch: from --natmods, or by default from
native/natmod/dist/ARCH of the source tree; a module of another arch is refused; --no-natmods skips."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fieldlink_host import build as hostbuild
from fieldlink_host.cli import main
from fieldlink_host.errors import FieldlinkError


def _dist(tmp: Path, arch: str, mpy: Path) -> Path:
    d = tmp / "dist"
    (d / arch).mkdir(parents=True)
    shutil.copy(mpy, d / arch / "flnative.mpy")
    return d


def test_default_dist_natmod_for_the_board_arch_is_bundled(natmod_rv32imc: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    dist = _dist(tmp_path, "rv32imc", natmod_rv32imc)
    monkeypatch.setattr(hostbuild, "NATMOD_DIST", dist)
    b = hostbuild.build_bundle("esp32-c6-devkitc-1", tmp_path / "out")  # arch rv32imc
    files = {f["path"] for f in b.manifest["files"]}
    assert "flnative.mpy" in files
    assert (tmp_path / "out" / "flnative.mpy").read_bytes() == natmod_rv32imc.read_bytes()
    b = hostbuild.build_bundle("esp32-c6-devkitc-1", tmp_path / "out", default_natmods=False)
    assert "flnative.mpy" not in {f["path"] for f in b.manifest["files"]}
    # a board of another arch gets nothing from dist/rv32imc
    b = hostbuild.build_bundle("esp32-s3-devkitc-1", tmp_path / "out-s3")
    assert "flnative.mpy" not in {f["path"] for f in b.manifest["files"]}


def test_natmod_of_another_arch_is_refused(natmod_rv32imc: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    dist = _dist(tmp_path, "xtensawin", natmod_rv32imc)  # an rv32imc module filed under xtensawin
    with pytest.raises(FieldlinkError, match="natmod is built for rv32imc"):
        hostbuild.build_bundle("esp32-s3-devkitc-1", tmp_path / "out", natmod_dir=dist)
    monkeypatch.setattr(hostbuild, "NATMOD_DIST", dist)
    assert main(["build", "--board", "esp32-s3-devkitc-1", "--out", str(tmp_path / "o2")]) != 0
    assert "natmod is built for rv32imc" in capsys.readouterr().err
    assert main(["build", "--board", "esp32-s3-devkitc-1", "--out", str(tmp_path / "o3"), "--no-natmods"]) == 0
