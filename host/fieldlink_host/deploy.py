"""Deploy a bundle to a board over its serial REPL, with mpremote (incremental) or ampy (full copy).

Device layout (docs/deploy.md, shared with `fieldlink image` and the OTA issue)::

    boot.py        fieldlink loader: puts the active slot first on sys.path
    main.py        fieldlink loader: imports the active slot's ``main`` module, if it has one
    fl/active      "a" or "b": the active app slot
    fl/a/, fl/b/   the two app slots; each holds one bundle (fieldlink/*.mpy, main.mpy, board.json,
                   manifest.json, ota.json/ota.sig when signed, ...)

A deploy fills the inactive slot (the staging directory) and then switches by renaming
``fl/active.new`` over ``fl/active`` — one rename, atomic on LittleFS (the ESP32 default). An
interrupted deploy therefore leaves the previous app active and bootable. All device paths are
relative to the working directory (``/`` on a board, the board directory on the virtual board).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fieldlink_host.build import (
    RESERVED,
    Bundle,
    build_bundle,
    bundle_payload_files,
    load_bundle,
    sha256_file,
)
from fieldlink_host.errors import FieldlinkError

SLOT_ROOT = "fl"
SLOTS = ("a", "b")
ACTIVE = f"{SLOT_ROOT}/active"
ACTIVE_NEW = f"{SLOT_ROOT}/active.new"

LOADER_BOOT = b'''# fieldlink loader, written by `fieldlink deploy` / `fieldlink image` (docs/deploy.md).
# Puts the active app slot (fl/a or fl/b, named in fl/active) first on sys.path.
import sys


def _fl_slot():
    try:
        f = open("fl/active")
        s = f.read().strip()
        f.close()
    except OSError:
        return None
    if s not in ("a", "b"):
        return None
    import os
    cwd = os.getcwd().rstrip("/")
    return cwd + "/fl/" + s


_fl_dir = _fl_slot()
if _fl_dir and _fl_dir not in sys.path:
    sys.path.insert(0, _fl_dir)
del _fl_slot, _fl_dir
'''

LOADER_MAIN = b'''# fieldlink loader, written by `fieldlink deploy` / `fieldlink image` (docs/deploy.md).
# Runs the active app slot's main module (main.mpy or main.py), if it has one.
import sys


def _fl_main():
    d = sys.path[0] if sys.path else ""
    if not (d.endswith("/fl/a") or d.endswith("/fl/b")):
        return
    import os
    for n in ("main.mpy", "main.py"):
        try:
            os.stat(d + "/" + n)
        except OSError:
            continue
        __import__("main")
        return


_fl_main()
'''

LOADER_FILES: dict[str, bytes] = {"boot.py": LOADER_BOOT, "main.py": LOADER_MAIN}


VIAS = ("mpremote", "ampy")
CHUNK = 1024

# --- device-side snippets (MicroPython; relative paths only) ------------------------------------------
_DEV_HELPERS = """\
import os
def _fl_h(p):
    import hashlib, binascii
    h = hashlib.sha256()
    f = open(p, 'rb')
    while True:
        b = f.read(1024)
        if not b:
            break
        h.update(b)
    f.close()
    return binascii.hexlify(h.digest()).decode()
def _fl_walk(d, pre, out, dirs):
    try:
        it = list(os.ilistdir(d))
    except OSError:
        return
    for e in it:
        p = d + '/' + e[0]
        if e[1] & 0x4000:
            dirs.append(pre + e[0])
            _fl_walk(p, pre + e[0] + '/', out, dirs)
        else:
            out[pre + e[0]] = _fl_h(p)
def _fl_mk(p):
    cur = ''
    for part in p.split('/'):
        cur = cur + '/' + part if cur else part
        try:
            os.mkdir(cur)
        except OSError:
            pass
def _fl_cp(a, b):
    fi = open(a, 'rb')
    fo = open(b, 'wb')
    while True:
        x = fi.read(1024)
        if not x:
            break
        fo.write(x)
    fi.close()
    fo.close()
def _fl_replace(tmp, dst):
    try:
        os.rename(tmp, dst)
    except OSError:
        os.remove(dst)
        os.rename(tmp, dst)
"""

_DEV_SCAN = """\
import json
_r = {'slots': {}, 'dirs': {}, 'loader': {}, 'active': None, 'board': None}
for _s in ('a', 'b'):
    _o = {}
    _d = []
    _fl_walk('fl/' + _s, '', _o, _d)
    _r['slots'][_s] = _o
    _r['dirs'][_s] = _d
for _n in ('boot.py', 'main.py'):
    try:
        _r['loader'][_n] = _fl_h(_n)
    except OSError:
        pass
try:
    _f = open('fl/active')
    _r['active'] = _f.read().strip()
    _f.close()
    _f = open('fl/' + _r['active'] + '/board.json')
    _r['board'] = json.loads(_f.read()).get('name')
    _f.close()
except Exception:
    pass
print(json.dumps(_r))
"""


class _Session(Protocol):
    def exec(self, code: str) -> bytes: ...

    def write_file(self, path: str, data: bytes, progress: Callable[[int], None] | None) -> None: ...

    def finish(self, reset: bool) -> None: ...


@dataclass
class DeployPlan:
    slot: str  # the staging slot that becomes active
    previous: str | None
    transfer: list[str] = field(default_factory=list)  # bundle paths copied from the host
    local: list[str] = field(default_factory=list)  # bundle paths copied on the device from the active slot
    remove: list[str] = field(default_factory=list)  # stale files in the staging slot
    remove_dirs: list[str] = field(default_factory=list)
    loader: list[str] = field(default_factory=list)  # loader files to (re)write
    switch: bool = True


@dataclass
class DeployResult:
    via: str
    port: str
    slot: str
    previous: str | None
    files_copied: int  # app files (listed in manifest.json) sent from the host
    bytes_copied: int  # every byte sent from the host, metadata included
    meta_copied: int  # manifest.json / ota.json / ota.sig / loader files sent from the host
    local_copies: int
    removed: int
    switched: bool
    reset: bool
    seconds: float

    def summary(self) -> str:
        if not self.switched:
            return (f"{self.port}: up to date (slot {self.slot}), 0 files copied"
                    f"{', reset' if self.reset else ''}")
        meta = f" + {self.meta_copied} metadata/loader" if self.meta_copied else ""
        return (f"{self.port}: {self.files_copied} files{meta} ({self.bytes_copied} bytes) copied via {self.via}, "
                f"{self.local_copies} reused on the device, {self.removed} removed; active slot "
                f"{self.previous or '-'} -> {self.slot}{', soft reset' if self.reset else ''} "
                f"({self.seconds:.1f} s)")


def plan_deploy(scan: dict[str, Any], target: dict[str, str], full: bool = False) -> DeployPlan:
    """Decide what to copy: ``target`` maps bundle path -> sha256; ``scan`` is the device state."""
    slots: dict[str, dict[str, str]] = scan.get("slots", {})
    active = scan.get("active") if scan.get("active") in SLOTS else None
    loader_now: dict[str, str] = scan.get("loader", {})
    loader = [n for n, data in LOADER_FILES.items() if full or loader_now.get(n) != hashlib.sha256(data).hexdigest()]
    if not full and active is not None and slots.get(active, {}) == target:
        return DeployPlan(slot=active, previous=active, loader=loader, switch=False)
    staging = SLOTS[1] if active == SLOTS[0] else SLOTS[0]
    have = {} if full else slots.get(staging, {})
    live = {} if (full or active is None) else slots.get(active, {})
    plan = DeployPlan(slot=staging, previous=active, loader=loader)
    for path, sha in sorted(target.items()):
        if have.get(path) == sha:
            continue
        if live.get(path) == sha:
            plan.local.append(path)
        else:
            plan.transfer.append(path)
    plan.remove = sorted(p for p in slots.get(staging, {}) if p not in target) if not full else []
    needed_dirs = {"/".join(p.split("/")[:i]) for p in target for i in range(1, p.count("/") + 1)}
    plan.remove_dirs = sorted((d for d in scan.get("dirs", {}).get(staging, []) if d not in needed_dirs),
                              key=lambda d: -d.count("/"))
    return plan


# --- transports ------------------------------------------------------------------------------------

class _MpremoteSession:
    def __init__(self, port: str, baud: int, soft_reset: bool) -> None:
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        try:
            self.t = SerialTransport(port, baudrate=baud)
        except TransportError as exc:
            raise FieldlinkError(f"cannot open {port}: {exc}") from exc
        try:
            self.t.enter_raw_repl(soft_reset=soft_reset)
        except TransportError as exc:
            self.t.close()
            raise FieldlinkError(f"no MicroPython raw REPL on {port}: {exc}") from exc

    def exec(self, code: str) -> bytes:
        from mpremote.transport import TransportError, TransportExecError

        try:
            out: bytes = self.t.exec(code)
            return out
        except TransportExecError as exc:
            raise FieldlinkError(f"device error: {exc.error_output.strip().splitlines()[-1]}") from exc
        except TransportError as exc:
            raise FieldlinkError(f"device error: {exc}") from exc

    def write_file(self, path: str, data: bytes, progress: Callable[[int], None] | None) -> None:
        from mpremote.transport import TransportError

        cb = (lambda done, total: progress(done)) if progress else None
        try:
            self.t.fs_writefile(path, data, chunk_size=CHUNK, progress_callback=cb)
        except (TransportError, OSError) as exc:
            raise FieldlinkError(f"writing {path}: {exc}") from exc

    def finish(self, reset: bool) -> None:
        try:
            self.t.exit_raw_repl()
            if reset:
                _soft_reset_friendly(self.t.serial)
        finally:
            self.t.close()


class _AmpySession:
    def __init__(self, port: str, baud: int) -> None:
        from ampy.pyboard import Pyboard, PyboardError

        try:
            self.pyb = Pyboard(port, baudrate=baud, rawdelay=0)
            self.pyb.enter_raw_repl()
        except (PyboardError, OSError) as exc:
            raise FieldlinkError(f"ampy cannot use {port}: {exc}") from exc

    def exec(self, code: str) -> bytes:
        from ampy.pyboard import PyboardError

        try:
            out: bytes = self.pyb.exec_(code)
            return out
        except PyboardError as exc:
            raise FieldlinkError(f"device error: {exc}") from exc

    def write_file(self, path: str, data: bytes, progress: Callable[[int], None] | None) -> None:
        # the same chunked raw-REPL write ampy's Files.put does, inside one raw REPL session
        self.exec(f"_fo = open({path!r}, 'wb')")
        for i in range(0, len(data), CHUNK):
            self.exec(f"_fo.write({data[i:i + CHUNK]!r})")
            if progress:
                progress(min(i + CHUNK, len(data)))
        self.exec("_fo.close()")

    def finish(self, reset: bool) -> None:
        try:
            self.pyb.exit_raw_repl()
            if reset:
                _soft_reset_friendly(self.pyb.serial)
        finally:
            self.pyb.close()


def _soft_reset_friendly(ser: Any, timeout: float = 10.0) -> None:
    """Ctrl-D at the friendly REPL: soft reboot that runs boot.py and main.py (the raw REPL's soft reset
    would not run main.py)."""
    ser.write(b"\r\x03\x03\x02")
    time.sleep(0.05)
    ser.write(b"\x04")
    buf = b""
    end = time.monotonic() + timeout
    while b"soft reboot" not in buf and time.monotonic() < end:
        n = max(1, getattr(ser, "in_waiting", 0))
        buf += ser.read(n) or b""
    if b"soft reboot" not in buf:
        raise FieldlinkError("the board did not soft-reboot after the deploy")


# --- deploy ----------------------------------------------------------------------------------------

def _resolve_bundle(bundle: Path | str | Bundle | None, board: str | None,
                    owner_keys: list[Path | str] | None = None) -> Bundle:
    if owner_keys and bundle is not None:
        raise FieldlinkError("--owner-key goes into a bundle being built: use --board without --bundle, or "
                             "`fieldlink build --owner-key`")
    if isinstance(bundle, Bundle):
        b = bundle
    elif bundle is not None:
        b = load_bundle(bundle)
    elif board is not None:
        b = build_bundle(board, owner_keys=owner_keys or ())
    else:
        raise FieldlinkError("deploy needs --bundle DIR or --board BOARD")
    if board is not None and Path(board).suffix != ".toml" and b.board != board:
        raise FieldlinkError(f"bundle is for board {b.board!r}, not {board!r}", where=str(b.root))
    return b


def deploy(port: str, bundle: Path | str | Bundle | None = None, *, via: str = "mpremote",
           board: str | None = None, reset: bool = True, force: bool = False, baud: int = 115200,
           progress: Callable[[int, int, str], None] | None = None,
           owner_keys: list[Path | str] | None = None) -> DeployResult:
    """Copy a bundle into the board's inactive app slot and switch to it with one rename.

    mpremote: hashes on the device decide what is copied (unchanged files are skipped or copied on the
    device from the active slot), stale files are removed. ampy: full copy. ``progress(done, total,
    path)`` counts bytes sent from the host.
    """
    if via not in VIAS:
        raise FieldlinkError(f"--via must be one of {', '.join(VIAS)}, got {via!r}")
    b = _resolve_bundle(bundle, board, owner_keys)
    t0 = time.monotonic()
    files = bundle_payload_files(b)
    target = {rel: sha256_file(b.root / rel) for rel in files}
    session: _Session = _MpremoteSession(port, baud, soft_reset=True) if via == "mpremote" else _AmpySession(port, baud)
    ok = False
    try:
        session.exec(_DEV_HELPERS)
        raw = session.exec(_DEV_SCAN).decode(errors="replace").strip().splitlines()
        try:
            scan = json.loads(raw[-1]) if raw else {}
        except ValueError as exc:
            raise FieldlinkError(f"unexpected device answer: {raw[-1][:80]!r}") from exc
        if scan.get("board") and scan["board"] != b.board and not force:
            raise FieldlinkError(f"the board runs an app for {scan['board']!r}, the bundle is for {b.board!r} "
                                 "(use --force to replace it)")
        plan = plan_deploy(scan, target, full=(via == "ampy"))
        staging = f"{SLOT_ROOT}/{plan.slot}"
        total = sum((b.root / p).stat().st_size for p in plan.transfer) + sum(len(LOADER_FILES[n]) for n in plan.loader)
        sent = 0
        if plan.switch:
            ops = ["_fl_mk('fl')"]
            if via == "ampy":
                ops.append(_RM_TREE.format(staging=staging))
            for p in plan.remove:
                ops.append(f"os.remove({staging + '/' + p!r})")
            for d in plan.remove_dirs:
                ops.append(f"try:\n    os.rmdir({staging + '/' + d!r})\nexcept OSError:\n    pass")
            dirs = sorted({staging} | {f"{staging}/{p.rsplit('/', 1)[0]}" for p in files if "/" in p})
            ops += [f"_fl_mk({d!r})" for d in dirs]
            for p in plan.local:
                ops.append(f"_fl_cp({SLOT_ROOT + '/' + str(plan.previous) + '/' + p!r}, {staging + '/' + p!r})")
            session.exec("\n".join(ops))
            for p in plan.transfer:
                data = (b.root / p).read_bytes()
                base = sent

                def cb(done: int, base: int = base, p: str = p) -> None:
                    if progress:
                        progress(base + done, total, p)

                session.write_file(f"{staging}/{p}", data, cb)
                sent += len(data)
                if progress:
                    progress(sent, total, p)
        for n in plan.loader:
            session.write_file(n + ".new", LOADER_FILES[n], None)
            session.exec(f"_fl_replace({n + '.new'!r}, {n!r})")
            sent += len(LOADER_FILES[n])
        if plan.switch:
            # the one atomic step: fl/active names the new slot
            session.exec(f"_f = open({ACTIVE_NEW!r}, 'w')\n_f.write({plan.slot + chr(10)!r})\n_f.close()\n"
                         f"_fl_replace({ACTIVE_NEW!r}, {ACTIVE!r})")
        ok = True
    finally:
        do_reset = ok and reset and (plan.switch or bool(plan.loader)) if ok else False
        try:
            session.finish(do_reset)
        except Exception:
            if ok:
                raise
    n_files = len([p for p in plan.transfer if p not in RESERVED])
    n_meta = len(plan.transfer) - n_files + len(plan.loader)
    return DeployResult(via=via, port=port, slot=plan.slot, previous=plan.previous, files_copied=n_files,
                        bytes_copied=sent, meta_copied=n_meta, local_copies=len(plan.local), removed=len(plan.remove),
                        switched=plan.switch, reset=do_reset, seconds=time.monotonic() - t0)


_RM_TREE = """\
def _fl_rmtree(d):
    try:
        it = list(os.ilistdir(d))
    except OSError:
        return
    for e in it:
        p = d + '/' + e[0]
        if e[1] & 0x4000:
            _fl_rmtree(p)
            try:
                os.rmdir(p)
            except OSError:
                pass
        else:
            os.remove(p)
_fl_rmtree({staging!r})
"""
