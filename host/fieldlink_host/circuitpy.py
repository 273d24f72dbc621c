"""CircuitPython: build a CIRCUITPY tree and deploy it to a mounted CIRCUITPY drive (docs/circuitpython.md).

Tree (``fieldlink build --runtime circuitpython``), usable as is on an empty CIRCUITPY drive::

    code.py              starter: puts the app directory on sys.path, runs the app's main or fieldlink.main
    lib/fieldlink/**     the device package: .py, or .mpy from a CircuitPython mpy-cross of the board's
                         CircuitPython major version (CircuitPython .mpy files start with "C" and change
                         format with the major version; MicroPython's mpy-cross output is refused)
    board.json           the board's device config (pin names)
    rules/NAME.bin       compiled rules
    <app files>          --app DIR
    manifest.json        format fieldlink-circuitpy/1: every file but code.py with size and sha256

Drive layout (``fieldlink deploy --drive PATH``)::

    code.py              the starter with APP = "fl/a" or "fl/b": the ONLY switch between trees
    fl/a/, fl/b/         two app directories, each one tree without code.py (lib/fieldlink, board.json, ...)

A deploy fills the directory code.py does not name (only files whose sha256 differs are written), then
replaces code.py (code.py.new, then one rename). Killed at any point before that rename, the drive still
starts the old code.py with its untouched app directory; after it, the new one with a complete tree. An
unchanged tree copies nothing. Files fieldlink did not put on the drive are never deleted or overwritten:
a foreign code.py is refused (``force`` keeps it as code.py.orig), stale files are removed only if a
fieldlink manifest lists them with the same sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fieldlink_host.boards import Board, load_board
from fieldlink_host.build import (
    RESERVED,
    _rules_source,
    _walk,
    canonical_json,
    read_version,
    role_modules,
    sha256_file,
    source_revision,
)
from fieldlink_host.depgraph import module_name
from fieldlink_host.errors import FieldlinkError
from fieldlink_host.paths import DEVICE_PKG, SIM_DIR

FORMAT = "fieldlink-circuitpy/1"
MANIFEST = "manifest.json"
CODE_PY = "code.py"
PENDING = ".fieldlink-pending.json"  # in an app directory while a deploy writes it: the files it claims
SLOT_ROOT = "fl"
SLOTS = ("a", "b")
#: first line of every code.py fieldlink writes: how a deploy recognises its own starter
STARTER_MARK = "# fieldlink starter"
STARTER = '''# fieldlink starter, written by `fieldlink build` / `fieldlink deploy` (docs/circuitpython.md).
# A deploy replaces this file; APP names the app directory it starts ("" = the drive's root).
import sys

APP = {app!r}


def _fl_start():
    import os
    root = "" if sys.platform in ("linux", "darwin") else "/"  # the virtual board runs in the drive's dir
    base = (root + APP) if APP else ("." if not root else "")
    for p in (base + "/lib", base or "/"):
        if p not in sys.path:
            sys.path.insert(0, p)
    for name in ("main.py", "main.mpy"):  # the app's own main module, if it has one
        try:
            os.stat(base + "/" + name)
        except OSError:
            continue
        __import__("main")
        return
    import fieldlink.main
    fieldlink.main.run(base + "/board.json")


_fl_start()
'''
#: CircuitPython major version -> what its .mpy files are (docs/circuitpython.md)
MPY_FORMATS = {9: "CircuitPython 9.x .mpy (header 'C', version 6)", 10: "CircuitPython 10.x .mpy (header 'C', version 6)"}
_CPY_VERSION = re.compile(r"CircuitPython (\d+)\.(\d+)")


def starter(app: str) -> bytes:
    return STARTER.format(app=app).encode()


# ------------------------------------------------------------------------------------------------ build

@dataclass(frozen=True)
class Tree:
    root: Path
    manifest: dict[str, Any]

    @property
    def files(self) -> dict[str, str]:
        """Tree path -> sha256 for every file except code.py (and the manifest itself)."""
        return {str(f["path"]): str(f["sha256"]) for f in self.manifest["files"]}


def cpy_mpy_cross(exe: str, major: int) -> str:
    """Check that ``exe`` is CircuitPython's mpy-cross for CircuitPython ``major``; its --version line."""
    try:
        proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        raise FieldlinkError(f"cannot run mpy-cross: {exc.strerror}", where=exe) from exc
    text = (proc.stdout + proc.stderr).strip()
    m = _CPY_VERSION.search(text)
    if not m:
        raise FieldlinkError(f"not CircuitPython's mpy-cross (--version says {text[:60]!r}); "
                             "MicroPython .mpy files do not load on CircuitPython", where=exe)
    if int(m.group(1)) != major:
        raise FieldlinkError(f"mpy-cross is for CircuitPython {m.group(1)}.x, the board runs {major}.x "
                             "(the .mpy format changes with the major version)", where=exe)
    return text.splitlines()[0]


def _compile(exe: str, src: Path, dest: Path, source_name: str) -> None:
    proc = subprocess.run([exe, "-s", source_name, "-o", str(dest), str(src)], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        last = (proc.stderr + proc.stdout).strip().splitlines()
        raise FieldlinkError(f"mpy-cross: {last[-1] if last else proc.returncode}", where=str(src))
    head = dest.read_bytes()[:1]
    if head != b"C":
        raise FieldlinkError(f"mpy-cross wrote a {head!r} .mpy, CircuitPython needs b'C'", where=str(src))


def build_tree(board: Board | str, out: Path | str, *, app_dir: Path | str | None = None,
               rules: Iterable[Path | str] = (), mpy_cross: str | None = None,
               device_pkg: Path | str | None = None, version: str | None = None,
               revision: str | None = None,
               progress: Callable[[int, int, str], None] | None = None) -> Tree:
    """Build the CIRCUITPY tree for a CircuitPython board into ``out`` (replacing a previous tree).
    ``mpy_cross`` (else $CIRCUITPY_MPY_CROSS) compiles the .py files; without one they ship as .py."""
    b = load_board(board) if isinstance(board, str) else board
    if b.runtime != "circuitpython":
        raise FieldlinkError(f"board {b.name} runs {b.runtime}; --runtime circuitpython needs a board with "
                             'runtime = "circuitpython"', where=str(b.path))
    major = int(b.circuitpython.get("version", 9))
    exe = mpy_cross or os.environ.get("CIRCUITPY_MPY_CROSS") or None
    mpy_version = cpy_mpy_cross(exe, major) if exe else None
    pkg = Path(device_pkg) if device_pkg is not None else DEVICE_PKG
    if not (pkg / "__init__.py").is_file():
        raise FieldlinkError("not a Python package (no __init__.py)", where=str(pkg))
    items: list[tuple[str, Path | None, bytes | None]] = []  # (tree path, source file, generated data)
    # only what the board's role imports, with CircuitPython's port (fieldlink_host.depgraph)
    wanted = role_modules(pkg, b.role, Path(app_dir) if app_dir is not None else None, "circuitpython", b)
    for f in _walk(pkg):
        if f.suffix == ".py" and wanted is not None and module_name(pkg, pkg.name, f) not in wanted:
            continue
        items.append((f"lib/{pkg.name}/{f.relative_to(pkg).as_posix()}", f, None))
    if app_dir is not None:
        app = Path(app_dir)
        if not app.is_dir():
            raise FieldlinkError("app directory not found", where=str(app))
        if SIM_DIR.resolve() in (app.resolve(), *app.resolve().parents):
            raise FieldlinkError("the virtual board modules (device/sim) must never be bundled", where=str(app))
        for f in _walk(app):
            rel = f.relative_to(app).as_posix()
            if rel in RESERVED or rel in ("board.json", CODE_PY) or rel.split("/")[0] in ("lib", SLOT_ROOT):
                raise FieldlinkError(f"{rel!r} is reserved for the build", where=str(f))
            items.append((rel, f, None))
    for r in rules:
        rsrc = _rules_source(Path(r), b)
        items.append((rsrc.dest, rsrc.src, rsrc.data))
    items.append(("board.json", None, b.device_json() + b"\n"))
    seen: set[str] = set()
    for dest, _, _ in items:
        final = dest[:-3] + ".mpy" if exe and dest.endswith(".py") else dest
        if final in seen:
            raise FieldlinkError(f"two sources map to {final!r}")
        seen.add(final)

    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise FieldlinkError("output exists and is not a directory", where=str(out_dir))
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
        raise FieldlinkError("output directory is not empty and holds no tree; refusing to replace it",
                             where=str(out_dir))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        files: list[dict[str, Any]] = []
        for i, (dest, src, data) in enumerate(items):
            compile_it = bool(exe) and dest.endswith(".py")
            final = dest[:-3] + ".mpy" if compile_it else dest
            target = stage / final
            target.parent.mkdir(parents=True, exist_ok=True)
            if compile_it and exe:
                if src is None:
                    src = stage / ".gen.py"
                    src.write_bytes(data or b"")
                _compile(exe, src, target, dest.removeprefix("lib/"))
            elif src is not None:
                target.write_bytes(src.read_bytes())
            else:
                target.write_bytes(data or b"")
            files.append({"path": final, "sha256": sha256_file(target), "size": target.stat().st_size})
            if progress:
                progress(i + 1, len(items), final)
        (stage / ".gen.py").unlink(missing_ok=True)
        files.sort(key=lambda f: str(f["path"]))
        manifest: dict[str, Any] = {
            "format": FORMAT, "board": b.name, "chip": b.chip, "runtime": "circuitpython",
            "circuitpython": major, "board_id": b.circuitpython.get("board_id"),
            "version": version or read_version(pkg),
            "source_revision": revision if revision is not None else source_revision(pkg),
            "mpy": MPY_FORMATS.get(major) if exe else None, "mpy_cross": mpy_version,
            "files": files, "total_size": sum(int(f["size"]) for f in files),
        }
        (stage / MANIFEST).write_bytes(canonical_json(manifest))
        (stage / CODE_PY).write_bytes(starter(""))
        for p in sorted(stage.rglob("*")):
            os.utime(p, (0, 0), follow_symlinks=False)
        os.chmod(stage, 0o755)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(stage, out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return Tree(out_dir, manifest)


def load_tree(path: Path | str) -> Tree:
    root = Path(path)
    try:
        manifest = json.loads((root / MANIFEST).read_bytes())
    except OSError as exc:
        raise FieldlinkError("not a CIRCUITPY tree (no manifest.json)", where=str(root)) from exc
    except ValueError as exc:
        raise FieldlinkError(f"manifest is not valid JSON: {exc}", where=str(root / MANIFEST)) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), list):
        raise FieldlinkError(f"manifest format is not {FORMAT}", where=str(root / MANIFEST))
    tree = Tree(root, manifest)
    for rel, sha in tree.files.items():
        p = root / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise FieldlinkError(f"unsafe path {rel!r} in manifest", where=str(root / MANIFEST))
        if not p.is_file() or sha256_file(p) != sha:
            raise FieldlinkError("file does not match the manifest", where=str(p))
    return tree


# ----------------------------------------------------------------------------------------------- deploy

@dataclass
class DriveResult:
    drive: str
    slot: str
    previous: str | None
    written: list[str] = field(default_factory=list)  # drive paths written (code.py last)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # stale files left because fieldlink did not write them
    bytes_written: int = 0

    def summary(self) -> str:
        if not self.written and not self.removed:
            return f"{self.drive}: up to date ({SLOT_ROOT}/{self.slot}), 0 files copied"
        return (f"{self.drive}: {len(self.written)} files ({self.bytes_written} bytes) written, "
                f"{len(self.removed)} removed; code.py starts {SLOT_ROOT}/{self.slot} "
                f"(was {SLOT_ROOT + '/' + self.previous if self.previous else 'none'})"
                + (f"; kept {len(self.kept)} files fieldlink did not write" if self.kept else ""))


_APP_LINE = re.compile(r'^APP = ["\']fl/([ab])["\']$', re.M)


def _file_sha(p: Path) -> str | None:
    try:
        return sha256_file(p) if p.is_file() else None
    except OSError:
        return None


def _is_circuitpy(drive: Path) -> None:
    if not drive.is_dir():
        raise FieldlinkError("drive not found (mount the board's CIRCUITPY drive)", where=str(drive))
    if drive.resolve() == Path("/"):
        raise FieldlinkError("refusing to deploy to / (not a CIRCUITPY drive)", where=str(drive))
    if not (drive / "boot_out.txt").is_file():
        raise FieldlinkError("no boot_out.txt: not a CircuitPython drive (CircuitPython writes it at boot)",
                             where=str(drive))


def _write(path: Path, data: bytes, write: Callable[[Path, bytes], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path, data)


def _default_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def deploy_drive(drive: Path | str, tree: Path | str | Tree, *, force: bool = False,
                 write: Callable[[Path, bytes], None] | None = None,
                 progress: Callable[[int, int, str], None] | None = None) -> DriveResult:
    """Copy a CIRCUITPY tree to the mounted drive: the app directory code.py does not start gets the changed
    files, then code.py is replaced. ``write(path, data)`` writes one file (tests inject interruptions)."""
    d = Path(drive)
    _is_circuitpy(d)
    t = tree if isinstance(tree, Tree) else load_tree(tree)
    w = write or _default_write
    code = d / CODE_PY
    previous: str | None = None
    if code.exists():
        text = code.read_text(encoding="utf-8", errors="replace")
        m = _APP_LINE.search(text)
        if text.startswith(STARTER_MARK) and m:
            previous = m.group(1)
        elif not force:
            raise FieldlinkError("code.py was not written by fieldlink; refusing to replace it "
                                 "(--force keeps it as code.py.orig)", where=str(code))
    target = dict(t.files)
    target[MANIFEST] = hashlib.sha256((t.root / MANIFEST).read_bytes()).hexdigest()
    res = DriveResult(drive=str(d), slot=previous or SLOTS[0], previous=previous)
    if previous is not None:
        live = d / SLOT_ROOT / previous
        if all(_file_sha(live / rel) == sha for rel, sha in target.items()):
            return res  # the running tree is the target: nothing to copy, code.py stays
    slot = SLOTS[1] if previous == SLOTS[0] else SLOTS[0]
    res.slot = slot
    staging = d / SLOT_ROOT / slot
    old = _slot_manifest(staging)
    claims = _claims(staging)
    todo = [rel for rel in sorted(target) if rel != MANIFEST and _file_sha(staging / rel) != target[rel]]
    foreign = [rel for rel in todo if (staging / rel).exists() and rel not in old and rel not in claims]
    if foreign and not force:
        raise FieldlinkError(f"{len(foreign)} file(s) in {SLOT_ROOT}/{slot} were not written by fieldlink "
                             f"(first: {foreign[0]}); refusing to overwrite them (--force replaces them)",
                             where=str(d))
    total = len(todo) + 2
    n = 0
    # claim the files before writing them: an interrupted deploy's files stay fieldlink's for the next one
    if todo:
        _write(staging / PENDING, canonical_json(sorted(claims | set(todo))), w)
    for rel in todo:
        data = (t.root / rel).read_bytes()
        _write(staging / rel, data, w)
        res.written.append(f"{SLOT_ROOT}/{slot}/{rel}")
        res.bytes_written += len(data)
        n += 1
        if progress:
            progress(n, total, rel)
    for rel in sorted(set(old) | claims):  # stale files fieldlink wrote there before (unchanged since)
        if rel in target or rel == PENDING:
            continue
        p = staging / rel
        if _file_sha(p) is not None and (rel in claims or _file_sha(p) == old[rel]):
            p.unlink()
            res.removed.append(f"{SLOT_ROOT}/{slot}/{rel}")
        elif p.exists():
            res.kept.append(f"{SLOT_ROOT}/{slot}/{rel}")
    _prune_empty_dirs(staging, [staging / r.split("/", 2)[2] for r in res.removed])
    mdata = (t.root / MANIFEST).read_bytes()
    if _file_sha(staging / MANIFEST) != target[MANIFEST]:
        _write(staging / MANIFEST, mdata, w)
        res.written.append(f"{SLOT_ROOT}/{slot}/{MANIFEST}")
        res.bytes_written += len(mdata)
    (staging / PENDING).unlink(missing_ok=True)
    n += 1
    if progress:
        progress(n, total, MANIFEST)
    if code.exists() and previous is None:  # --force over a foreign code.py: keep it
        keep = d / "code.py.orig"
        if keep.exists():
            raise FieldlinkError("code.py.orig exists; move it away first", where=str(keep))
        os.replace(code, keep)
    new = d / "code.py.new"
    data = starter(f"{SLOT_ROOT}/{slot}")
    _write(new, data, w)
    os.replace(new, code)  # the switch: one rename
    res.written.append(CODE_PY)
    res.bytes_written += len(data)
    if progress:
        progress(total, total, CODE_PY)
    return res


def _claims(slot_dir: Path) -> set[str]:
    """Files an interrupted deploy was writing into this app directory (fieldlink's, whatever their content)."""
    try:
        got = json.loads((slot_dir / PENDING).read_bytes())
    except (OSError, ValueError):
        return set()
    return {str(x) for x in got} if isinstance(got, list) else set()


def _slot_manifest(slot_dir: Path) -> dict[str, str]:
    """path -> sha256 of the files a previous deploy put into this app directory (its manifest.json)."""
    try:
        m = json.loads((slot_dir / MANIFEST).read_bytes())
        files = {str(f["path"]): str(f["sha256"]) for f in m["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    files[MANIFEST] = _file_sha(slot_dir / MANIFEST) or ""
    return files


def _prune_empty_dirs(root: Path, removed: list[Path]) -> None:
    """Remove the directories that the removed files leave empty (up to ``root``); no other directory."""
    for f in removed:
        d = f.parent
        while d != root and root in d.parents:
            try:
                d.rmdir()  # only succeeds when empty
            except OSError:
                break
            d = d.parent
