"""Deploy benchmark: files and bytes sent for a full, a no-change and a one-change deploy, measured side by
side in one run against the virtual board (real mpremote and real ampy).

    python bench/deploy.py [--board sim-node]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from fieldlink_host.build import build_bundle
from fieldlink_host.deploy import DeployResult, deploy
from fieldlink_host.paths import DEVICE_PKG
from fieldlink_host.ptyboard import VirtualBoardProcess


def _row(name: str, r: DeployResult) -> str:
    return (f"{name:24} {r.via:9} {r.files_copied:6} {r.meta_copied:5} {r.bytes_copied:9} "
            f"{r.local_copies:7} {r.seconds:7.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--board", default="sim-node")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fl-bench-"))
    try:
        pkg = tmp / "fieldlink"
        shutil.copytree(DEVICE_PKG, pkg, ignore=shutil.ignore_patterns("__pycache__"))
        app = tmp / "app"
        app.mkdir()
        (app / "main.py").write_text("print('bench app v1')\n")
        b1 = build_bundle(args.board, tmp / "b1", app_dir=app, device_pkg=pkg, revision="bench")
        (app / "main.py").write_text("print('bench app v2')\n")
        b2 = build_bundle(args.board, tmp / "b2", app_dir=app, device_pkg=pkg, revision="bench")
        print(f"bundle: {len(b1.files)} files, {b1.total_size} bytes ({args.board}, {b1.manifest['arch']})")
        print(f"{'deploy':24} {'via':9} {'files':>6} {'meta':>5} {'bytes':>9} {'reused':>7} {'seconds':>7}")
        rows = []
        with VirtualBoardProcess(tmp / "fs-mpremote") as vb:
            full = deploy(vb.port, b1, reset=False)
            same = deploy(vb.port, b1, reset=False)
            one = deploy(vb.port, b2, reset=False)
            rows += [("full (empty board)", full), ("no change", same), ("one file changed", one)]
        with VirtualBoardProcess(tmp / "fs-ampy") as vb:
            afull = deploy(vb.port, b1, via="ampy", reset=False)
            asame = deploy(vb.port, b1, via="ampy", reset=False)
            aone = deploy(vb.port, b2, via="ampy", reset=False)
            rows += [("full (empty board)", afull), ("no change", asame), ("one file changed", aone)]
        for name, r in rows:
            print(_row(name, r))
        if one.bytes_copied:
            print(f"one-change bytes, mpremote vs ampy full copy: 1 : {aone.bytes_copied / one.bytes_copied:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
