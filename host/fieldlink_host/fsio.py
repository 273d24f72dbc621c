"""The one place where file-system, decode and nesting problems become :class:`FieldlinkError`.

Every command reads and writes user files through these helpers, so a bad path, a binary or non-UTF-8
file, a file that is too big, a document nested too deeply or an output that cannot be written always
ends as one line naming the path and the reason (``fieldlink: error: PATH: reason``), never as a
traceback. Outputs are written atomically (temp file in the same directory, fsync, rename), so an
interrupted write leaves the old file or the new one, never a truncated mix.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fieldlink_host.errors import FieldlinkError

#: largest input file any command reads (bundles are a few hundred KB, firmware a few MB)
MAX_INPUT = 64 << 20
#: deepest nesting accepted in JSON, TOML and YAML documents (real files nest 3-5 levels)
MAX_DEPTH = 64

PathLike = str | os.PathLike[str]


def os_reason(exc: OSError) -> str:
    """The human part of an OSError (``No such file or directory``), without the repeated path."""
    if exc.errno == errno.EISDIR:
        return "is a directory"
    return exc.strerror or str(exc) or type(exc).__name__


def from_os_error(exc: OSError, where: PathLike | None = None, action: str = "") -> FieldlinkError:
    w = str(where) if where is not None else (str(exc.filename) if exc.filename else None)
    reason = os_reason(exc)
    return FieldlinkError(f"{action}: {reason}" if action else reason, where=w)


@contextlib.contextmanager
def user_errors(where: PathLike | None = None, action: str = "") -> Iterator[None]:
    """Turn OS, decode and nesting errors raised inside the block into FieldlinkError at ``where``."""
    try:
        yield
    except FieldlinkError:
        raise
    except OSError as exc:
        raise from_os_error(exc, where, action) from None
    except UnicodeError:
        raise FieldlinkError(f"{action + ': ' if action else ''}not UTF-8 text",
                             where=str(where) if where is not None else None) from None
    except RecursionError:
        raise FieldlinkError(f"{action + ': ' if action else ''}nested too deeply",
                             where=str(where) if where is not None else None) from None


def read_bytes(path: PathLike, what: str = "file", limit: int = MAX_INPUT) -> bytes:
    """Read a whole file; refuses directories, special files that never end and files over ``limit``."""
    p = Path(path)
    with user_errors(p, f"cannot read {what}"):
        mode = os.stat(p).st_mode
        if stat.S_ISDIR(mode):
            raise FieldlinkError(f"cannot read {what}: is a directory", where=str(p))
        if not stat.S_ISREG(mode):  # a FIFO or a device would block or never end
            raise FieldlinkError(f"cannot read {what}: not a regular file", where=str(p))
        with open(p, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_size > limit:
                raise FieldlinkError(f"{what} is too large ({st.st_size} bytes, limit {limit})", where=str(p))
            data = f.read(limit + 1)
    if len(data) > limit:
        raise FieldlinkError(f"{what} is too large (over {limit} bytes)", where=str(p))
    return data


def decode_text(data: bytes, where: PathLike, what: str = "file") -> str:
    """Strict UTF-8; a NUL byte means a binary file (no text format the project reads contains one)."""
    if b"\x00" in data:
        raise FieldlinkError(f"{what} is binary, not text (NUL byte at offset {data.index(0)})", where=str(where))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FieldlinkError(f"{what} is not UTF-8 text (invalid byte at offset {exc.start})",
                             where=str(where)) from None


def read_text(path: PathLike, what: str = "file", limit: int = MAX_INPUT) -> str:
    return decode_text(read_bytes(path, what, limit), path, what)


def check_output(p: Path, what: str) -> None:
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise FieldlinkError(f"cannot write {what}: is a directory", where=str(p))
    if not parent.exists():
        raise FieldlinkError(f"cannot write {what}: directory {parent} does not exist", where=str(p))
    if not parent.is_dir():
        raise FieldlinkError(f"cannot write {what}: {parent} is not a directory", where=str(p))


def write_bytes(path: PathLike, data: bytes, what: str = "file", mode: int | None = None,
                exclusive: bool = False) -> Path:
    """Write ``data`` atomically: temp file beside ``path``, fsync, rename over it.

    ``exclusive`` refuses to replace an existing file. ``mode`` sets the permission bits (else 0644
    or the replaced file's mode)."""
    p = Path(path)
    check_output(p, what)
    if exclusive and p.exists():
        raise FieldlinkError(f"refusing to overwrite an existing {what}", where=str(p))
    with user_errors(p, f"cannot write {what}"):
        if mode is None:
            try:
                mode = p.stat().st_mode & 0o777
            except FileNotFoundError:
                mode = 0o644
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent if str(p.parent) else ".")
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), mode)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if exclusive:
                os.link(tmp, p)  # fails if p appeared meanwhile: never replaces
                os.unlink(tmp)
            else:
                os.replace(tmp, p)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return p


def write_text(path: PathLike, text: str, what: str = "file", mode: int | None = None,
               exclusive: bool = False) -> Path:
    return write_bytes(path, text.encode("utf-8"), what, mode, exclusive)


def check_depth(obj: Any, where: PathLike, limit: int = MAX_DEPTH, what: str = "document") -> None:
    """Refuse containers nested deeper than ``limit`` (iterative: never recurses itself)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            children: Any = o.values()
        elif isinstance(o, list | tuple):
            children = o
        else:
            continue
        if d > limit:
            raise FieldlinkError(f"{what} is nested more than {limit} levels deep", where=str(where))
        stack.extend((c, d + 1) for c in children)


def load_json(data: bytes | str, where: PathLike, what: str = "JSON", limit: int = MAX_DEPTH) -> Any:
    try:
        obj = json.loads(data)
    except RecursionError:
        raise FieldlinkError(f"{what} is nested too deeply", where=str(where)) from None
    except UnicodeDecodeError:
        raise FieldlinkError(f"{what} is not UTF-8 text", where=str(where)) from None
    except ValueError as exc:
        raise FieldlinkError(f"invalid {what}: {exc}", where=str(where)) from None
    check_depth(obj, where, limit, what)
    return obj


def load_toml(text: str, where: PathLike, what: str = "TOML", limit: int = MAX_DEPTH) -> dict[str, Any]:
    try:
        obj = tomllib.loads(text)
    except RecursionError:
        raise FieldlinkError(f"{what} is nested too deeply", where=str(where)) from None
    except tomllib.TOMLDecodeError as exc:
        raise FieldlinkError(f"invalid {what}: {exc}", where=str(where)) from None
    check_depth(obj, where, limit, what)
    return obj


def check_yaml_depth(text: str, where: PathLike, limit: int = MAX_DEPTH) -> None:
    """PyYAML's composer recurses once per level; scan the (iterative) event stream first and refuse
    documents nested deeper than ``limit`` before composing them."""
    import yaml

    depth = 0
    try:
        for ev in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(ev, yaml.CollectionStartEvent):
                depth += 1
                if depth > limit:
                    mark = ev.start_mark
                    w = f"{where}:{mark.line + 1}:{mark.column + 1}" if mark else str(where)
                    raise FieldlinkError(f"YAML is nested more than {limit} levels deep", where=w)
            elif isinstance(ev, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return  # syntax errors are reported by the real parse, with its line and column


__all__ = ["MAX_DEPTH", "MAX_INPUT", "check_depth", "check_output", "check_yaml_depth", "decode_text", "from_os_error",
           "load_json", "load_toml", "os_reason", "read_bytes", "read_text", "user_errors", "write_bytes",
           "write_text"]
