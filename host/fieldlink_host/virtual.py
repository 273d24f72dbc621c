"""Run virtual boards and the UDP air hub as processes (used by ``fieldlink sim`` and system tests).

    air = start_air(seed=3)                       # hub subprocess on a free 127.0.0.1 port
    air.set_link("02:00:00:00:00:0a", "*", loss=0.3)
    vb = VirtualBoard(tmp / "n1", board="sim-node", mac="02:00:00:00:00:0a", air=air,
                      entry="my_app:main", extra_path=[tests_dir]).start()
    vb.wait_for(r"ready", timeout=10)
    vb.stop(); air.stop()

Each board's filesystem is its own flash, ``DIR/flash/vfs.bin`` (LittleFS2 at ``/``, see
docs/virtual-board.md); :class:`BoardFlash` reads and writes it from the host.

A board process that ends with a reset (machine.reset/soft_reset, a WDT timeout, deepsleep) is started
again like real hardware would restart: immediately, or after the deep-sleep time. The reason comes from
``sim_state.json`` in the board directory (``pending``), which the board writes just before it ends.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from fieldlink_host.errors import FieldlinkError, FieldlinkTimeout
from fieldlink_host.paths import SIM_DIR, micropython_binary, micropython_path

#: exit codes of a board process (device/sim/simboard.py)
EXIT_HARD_RESET = 100
EXIT_WDT_RESET = 101
EXIT_DEEPSLEEP = 102
EXIT_SOFT_RESET = 103
#: machine.reset_cause() values
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
CAUSE_NAMES = {PWRON_RESET: "power-on", HARD_RESET: "hard reset", WDT_RESET: "watchdog",
               DEEPSLEEP_RESET: "deep sleep", SOFT_RESET: "soft reset"}


def _drain(stream: Any, sink: list[str], cond: threading.Condition, echo: str | None) -> None:
    for raw in iter(stream.readline, ""):
        line = raw.rstrip("\n")
        with cond:
            sink.append(line)
            cond.notify_all()
        if echo is not None:
            print(f"[{echo}] {line}", flush=True)


#: the sim's default partition table (device/sim/simboard.py DEFAULT_PARTITIONS): its vfs partition
DEFAULT_VFS_SIZE = 0x310000


def write_board_files(d: Path, *, name: str, chip: str, partitions: list[dict[str, Any]] | None = None,
                      espnow_v2: bool = False) -> None:
    """The launcher's files in a board directory: ``sim_board.json`` (name, chip, ESP-NOW version for
    the sim) and ``partitions.json`` when a partition table is given."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "sim_board.json").write_text(json.dumps({"name": name, "chip": chip, "espnow_v2": bool(espnow_v2)}))
    if partitions:
        (d / "partitions.json").write_text(json.dumps(partitions))


def prepare_board_dir(d: str | Path, board: str | None = None) -> tuple[str, str, bool]:
    """Write the launcher's files for ``board`` (a board name or TOML path; None = the sim's defaults)
    into board directory ``d``; returns (name, chip, espnow_v2)."""
    name, chip, v2 = "fieldlink virtual board", "esp32s3", False
    parts: list[dict[str, Any]] | None = None
    if board:
        from fieldlink_host.boards import load_board

        b = load_board(board)
        name, chip, v2 = b.name, b.chip, b.espnow_v2
        parts = [{"name": p.name, "type": p.type, "subtype": p.subtype, "offset": p.offset, "size": p.size}
                 for p in b.partitions] or None
    write_board_files(Path(d), name=name, chip=chip, partitions=parts, espnow_v2=v2)
    return name, chip, v2


class BoardFlash:
    """The filesystem of a virtual board as it sits in its flash: ``BOARD_DIR/flash/vfs.bin`` (LittleFS2
    with the ESP32 port's geometry, the same bytes ``fieldlink image`` puts in the ``vfs`` partition),
    read and written with littlefs-python. Write only while the board is not running."""

    def __init__(self, board_dir: str | Path) -> None:
        self.dir = Path(board_dir)
        self.path = self.dir / "flash" / "vfs.bin"

    @property
    def size(self) -> int:
        try:
            parts = json.loads((self.dir / "partitions.json").read_text())
        except (OSError, ValueError):
            return DEFAULT_VFS_SIZE
        for p in parts:
            if p.get("name") == "vfs":
                return int(p["size"])
        raise FieldlinkError("board has no vfs partition", where=str(self.dir / "partitions.json"))

    def image(self) -> bytes:
        """The whole partition (the file is shorter while the tail is still erased)."""
        data = self.path.read_bytes() if self.path.exists() else b""
        return data + b"\xff" * (self.size - len(data))

    def _fs(self, create: bool = False) -> Any:
        from littlefs import LittleFS

        from fieldlink_host.image import BLOCK_SIZE, LFS_LOOKAHEAD, LFS_PROG_SIZE, LFS_READ_SIZE, _lfs

        data = self.image()
        if data[:BLOCK_SIZE * 2] == b"\xff" * (BLOCK_SIZE * 2):
            if not create:
                raise FieldlinkError("the board's filesystem is not formatted yet (boot it once)",
                                     where=str(self.path))
            return _lfs(self.size // BLOCK_SIZE)  # formatted like `fieldlink image` does
        fs: Any = LittleFS(block_size=BLOCK_SIZE, block_count=self.size // BLOCK_SIZE, read_size=LFS_READ_SIZE,
                           prog_size=LFS_PROG_SIZE, lookahead_size=LFS_LOOKAHEAD, mount=False)
        fs.context.buffer[:] = data
        fs.mount()
        return fs

    def files(self) -> dict[str, bytes]:
        """Every file on the board: path (no leading '/') -> content; {} if never formatted."""
        if not self.path.exists():
            return {}
        from fieldlink_host.image import read_fs_image

        return read_fs_image(self.image())

    def listdir(self, path: str = "/") -> list[str]:
        fs = self._fs()
        try:
            return sorted(fs.listdir(path))
        finally:
            fs.unmount()

    def read(self, path: str) -> bytes:
        return self.files()[path.lstrip("/")]

    def write(self, files: Mapping[str, bytes | str]) -> None:
        """Put files on the board's filesystem (formatting an erased one like the firmware would)."""
        fs = self._fs(create=True)
        for path, data in files.items():
            p = path.lstrip("/")
            parent = p.rsplit("/", 1)[0] if "/" in p else ""
            if parent:
                fs.makedirs(parent, exist_ok=True)
            with fs.open(p, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
        fs.unmount()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(bytes(fs.context.buffer))
        os.replace(tmp, self.path)


class AirHub:
    """A running air hub process and its tiny JSON control API."""

    def __init__(self, proc: subprocess.Popen[str], port: int, host: str = "127.0.0.1", token: str = "") -> None:
        self.proc = proc
        self.token = token  # the hub refuses control messages without it (only this launcher knows it)
        self.port = port
        self.host = host
        self.lines: list[str] = []
        self._cond = threading.Condition()

    @property
    def address(self) -> str:
        """``host:port`` as boards expect it in FIELDLINK_AIR / ``--air``."""
        return f"{self.host}:{self.port}"

    def control(self, msg: Mapping[str, Any], timeout: float = 2.0) -> dict[str, Any]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(json.dumps({**dict(msg), "token": self.token}).encode(), (self.host, self.port))
            try:
                data, _ = s.recvfrom(65536)
            except TimeoutError as exc:
                raise FieldlinkError(f"air hub at {self.address} did not answer {msg.get('op')!r}") from exc
        try:
            reply: dict[str, Any] = json.loads(data)
        except ValueError:
            reply = {}
        if not isinstance(reply, dict) or not reply.get("ok"):
            raise FieldlinkError(f"air hub refused {msg.get('op')!r}: "
                                 f"{reply.get('error') if isinstance(reply, dict) else reply!r}")
        return reply

    def set_link(self, src: str = "*", dst: str = "*", **params: float) -> None:
        """Set loss/latency_ms/jitter_ms/dup/corrupt/rssi/ack_loss for frames src -> dst ("*" = any)."""
        self.control({"op": "link", "src": src, "dst": dst, **params})

    def reset_links(self) -> None:
        self.control({"op": "reset_links"})

    def seed(self, seed: int) -> None:
        self.control({"op": "seed", "seed": seed})

    def stats(self) -> dict[str, Any]:
        return self.control({"op": "stats"})

    def boards(self) -> dict[str, int]:
        return dict(self.control({"op": "boards"})["boards"])

    def apply_scenario(self, scenario: Mapping[str, Any] | str | Path) -> None:
        """Apply a scenario's ``air`` section: ``{"defaults": {...}, "links": [{"src", "dst", ...}]}``."""
        if not isinstance(scenario, Mapping):
            try:
                scenario = json.loads(Path(scenario).read_text())
            except (OSError, ValueError) as exc:
                raise FieldlinkError(f"cannot read scenario: {exc}", where=str(scenario)) from exc
        assert isinstance(scenario, Mapping)
        section = scenario.get("air") or {}
        if not isinstance(section, Mapping):
            raise FieldlinkError("scenario 'air' must be an object")
        if "seed" in scenario:
            self.seed(int(scenario["seed"]))
        defaults = section.get("defaults") or {}
        if defaults:
            self.set_link("*", "*", **defaults)
        for link in section.get("links") or []:
            link = dict(link)
            self.set_link(str(link.pop("src", "*")), str(link.pop("dst", "*")), **link)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.control({"op": "stop"}, timeout=1.0)
                self.proc.wait(timeout=2)
            except (FieldlinkError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> AirHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_air(port: int = 0, seed: int = 1, runtime: str = "python", echo: bool = False,
              **params: float) -> AirHub:
    """Start the hub (``python -m fieldlink_sim.air`` or ``micropython air.py``) and wait until it listens.

    ``params`` are default link parameters: loss, latency_ms, jitter_ms, dup, corrupt, rssi, ack_loss."""
    args = ["--port", str(port), "--seed", str(seed)]
    for k, v in params.items():
        args += ["--" + k.replace("_", "-"), str(v)]
    if runtime == "python":
        cmd = [sys.executable, "-u", "-m", "fieldlink_sim.air", *args]
    elif runtime == "micropython":
        cmd = [micropython_binary(), str(SIM_DIR / "air.py"), *args]
    else:
        raise FieldlinkError(f"unknown air runtime {runtime!r} (python or micropython)")
    token = secrets.token_hex(16)
    env = {**os.environ, "FIELDLINK_AIR_TOKEN": token}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    m = re.match(r"air: listening on ([\d.]+):(\d+)", first)
    if not m:
        rest = proc.stdout.read() if proc.poll() is not None else ""
        proc.kill()
        raise FieldlinkError(f"air hub did not start: {(first + rest).strip()}")
    hub = AirHub(proc, int(m.group(2)), m.group(1), token)
    threading.Thread(target=_drain, args=(proc.stdout, hub.lines, hub._cond, "air" if echo else None),
                     daemon=True).start()
    return hub


Matcher = str | re.Pattern[str] | Callable[[str], bool]


class VirtualBoard:
    """One virtual board: a ``micropython vboard.py`` process, restarted on resets like hardware."""

    def __init__(self, dir: str | Path, board: str | Path | Mapping[str, Any] | None = None,
                 mac: str | None = None, air: AirHub | str | None = None,
                 scenario: str | Path | Mapping[str, Any] | None = None, entry: str | None = None,
                 name: str | None = None, auto_restart: bool = True, env: Mapping[str, str] | None = None,
                 extra_path: Iterable[str | Path] = (), echo: bool = False, chips: bool = True,
                 runtime: str = "micropython") -> None:
        if runtime not in ("micropython", "circuitpython"):
            raise FieldlinkError(f"runtime must be micropython or circuitpython, got {runtime!r}")
        #: "circuitpython": device/sim/circuitpython/cpboard.py with CircuitPython's modules and no device
        #: sources on the path; `dir` is then the board's CIRCUITPY drive (docs/circuitpython.md)
        self.runtime = runtime
        self.dir = Path(dir)
        self.board = board
        self.mac = mac
        self.air = air.address if isinstance(air, AirHub) else air
        self.scenario = scenario
        self.entry = entry
        self.name = name
        self.auto_restart = auto_restart
        self.env = dict(env or {})
        self.extra_path = [str(p) for p in extra_path]
        self.echo = echo
        self.chips = chips
        self.lines: list[str] = []
        #: (event, detail) in order: ("start", n), ("exit", returncode), ("reset", cause), ("sleep", ms)
        self.events: list[tuple[str, Any]] = []
        self.boots = 0
        self.proc: subprocess.Popen[str] | None = None
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._wake = threading.Event()

    # ---- setup -----------------------------------------------------------------------------------
    def _prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.board is not None:
            if isinstance(self.board, Mapping):
                config = dict(self.board)
                parts = config.get("partitions")
                v2 = bool(config.pop("espnow_v2", False))
            else:
                from fieldlink_host.boards import load_board
                b = load_board(str(self.board))
                config = b.device_config()
                parts = [{"name": p.name, "type": p.type, "subtype": p.subtype, "offset": p.offset,
                          "size": p.size} for p in b.partitions]
                v2 = b.espnow_v2
            (self.dir / "board.json").write_text(json.dumps(config, sort_keys=True))
            write_board_files(self.dir, name=str(config.get("name", self.dir.name)),
                              chip=str(config.get("chip", "esp32s3")), partitions=parts, espnow_v2=v2)
        if isinstance(self.scenario, Mapping):
            path = self.dir / "scenario.json"
            path.write_text(json.dumps(dict(self.scenario)))
            self.scenario = path

    def command(self) -> list[str]:
        entry = SIM_DIR / ("circuitpython/cpboard.py" if self.runtime == "circuitpython" else "vboard.py")
        cmd = [micropython_binary(), "-X", "heapsize=8M", str(entry), "--dir", str(self.dir)]
        if self.mac:
            cmd += ["--mac", self.mac]
        if self.air:
            cmd += ["--air", self.air]
        if self.scenario is not None:
            cmd += ["--scenario", str(self.scenario)]
        if self.entry:
            cmd += ["--entry", self.entry]
        if self.name:
            cmd += ["--name", self.name]
        if not self.chips:
            cmd.append("--no-chips")
        return cmd

    def _spawn(self) -> None:
        env = dict(os.environ)
        env.update(self.env)
        if self.runtime == "circuitpython":  # fieldlink comes from the drive (code.py puts it on the path)
            path = os.pathsep.join([str(SIM_DIR / "circuitpython"), str(SIM_DIR), ".frozen"])
        else:
            path = micropython_path()
        env["MICROPYPATH"] = os.pathsep.join([*self.extra_path, path])
        if self.air:
            env["FIELDLINK_AIR"] = self.air
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1, env=env, errors="replace")
        self.boots += 1
        self.events.append(("start", self.boots))

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> VirtualBoard:
        if self._supervisor is not None and self._supervisor.is_alive():
            raise FieldlinkError(f"virtual board {self.dir} is already running")
        self._prepare()
        self._stopping.clear()
        self._spawn()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True, name=f"vboard-{self.dir.name}")
        self._supervisor.start()
        return self

    def _pending(self) -> dict[str, Any] | None:
        try:
            state = json.loads((self.dir / "sim_state.json").read_text())
        except (OSError, ValueError):
            return None
        pend = state.get("pending")
        return pend if isinstance(pend, dict) else None

    def _supervise(self) -> None:
        while True:
            proc = self.proc
            assert proc is not None and proc.stdout is not None
            _drain(proc.stdout, self.lines, self._cond, self.dir.name if self.echo else None)
            rc = proc.wait()
            with self._cond:
                self.events.append(("exit", rc))
                self._cond.notify_all()
            if self._stopping.is_set():
                return
            pend = self._pending()
            if pend is None or not self.auto_restart:
                return  # crashed, finished or stopped by hand: stays off, like a board sitting in the REPL
            cause = int(pend.get("cause", 0))
            with self._cond:
                self.events.append(("reset", cause))
            if cause == DEEPSLEEP_RESET:
                ms = pend.get("sleep_ms")
                with self._cond:
                    self.events.append(("sleep", ms))
                self._wake.clear()
                if ms is None:
                    self._wake.wait()  # sleeps until wake() or stop()
                else:
                    self._wake.wait(float(ms) / 1000.0)
                if self._stopping.is_set():
                    return
            self._spawn()

    def wake(self) -> None:
        """End a deep sleep early (like an external wake-up pin)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._supervisor is not None:
            self._supervisor.join(timeout=timeout)

    def restart(self) -> VirtualBoard:
        """Power-cycle the board (the next boot reports PWRON_RESET)."""
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def mark(self) -> int:
        """Index of the next output line (pass to wait_for(since=...))."""
        with self._cond:
            return len(self.lines)

    def wait_for(self, match: Matcher, timeout: float = 10.0, since: int = 0) -> str:
        """Wait for an output line (from index ``since``) matching a regex or a predicate; return it."""
        if isinstance(match, str):
            pat = re.compile(match)
            pred: Callable[[str], bool] = lambda s: pat.search(s) is not None  # noqa: E731
        elif isinstance(match, re.Pattern):
            rx = match
            pred = lambda s: rx.search(s) is not None  # noqa: E731
        else:
            pred = match
        deadline = time.monotonic() + timeout
        i = since
        with self._cond:
            while True:
                while i < len(self.lines):
                    if pred(self.lines[i]):
                        return self.lines[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = "\n".join(self.lines[-20:])
                    raise FieldlinkTimeout(f"{self.dir.name}: no line matching {match!r} within {timeout}s; "
                                       f"last output:\n{tail}")
                self._cond.wait(min(left, 0.2))

    def wait_exit(self, timeout: float = 10.0) -> int:
        """Wait until the supervisor gave up on the board (stopped, crashed or finished)."""
        if self._supervisor is not None:
            self._supervisor.join(timeout)
            if self._supervisor.is_alive():
                raise FieldlinkTimeout(f"{self.dir.name} still running after {timeout}s")
        rc = self.returncode
        return -1 if rc is None else rc

    def __enter__(self) -> VirtualBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
