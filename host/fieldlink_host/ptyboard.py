"""A virtual board on a pseudo-terminal that behaves like a MicroPython ESP32 on USB serial.

A small supervisor owns the client-facing pseudo-terminal (``/dev/pts/N``, kept open across clients and
interpreter restarts) and runs the MicroPython unix port (``micropython -i``, MICROPYPATH from
:func:`fieldlink_host.paths.micropython_path` so the sim modules import) on a second pseudo-terminal,
relaying bytes both ways:

* boot: the board's own filesystem -- the LittleFS2 in its ``vfs`` partition, ``BOARD_DIR/flash/vfs.bin``
  -- replaces the host's at ``/`` like the ESP32 port's ``_boot.py`` does (device/sim/simboot.py; nothing
  outside the board is reachable), then ``boot.py`` then ``main.py`` (if present), then the friendly
  REPL with a banner naming the
  board (``MicroPython <version> on <date>; <board> with <CHIP>``);
* soft reset — Ctrl-D at the friendly REPL, Ctrl-D on an empty raw REPL, ``sys.exit()`` (the interpreter
  exits with status 0): prints ``MPY: soft reboot`` and restarts; from the raw REPL it runs ``boot.py``
  only and comes back in the raw REPL (``raw REPL; CTRL-B to exit``), as the firmware does;
* hard reset — the interpreter exits with a non-zero status (the sim's ``machine.reset()``) or a
  signal: prints a ROM reset line and boots again;
* Ctrl-C interrupts ``main.py`` (KeyboardInterrupt, then the REPL), as on the board.

So unmodified mpremote (with and without ``resume``) and ampy work against it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import re
import select
import signal
import termios
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path

from fieldlink_host.errors import FieldlinkError
from fieldlink_host.paths import micropython_binary, micropython_path
from fieldlink_host.virtual import BoardFlash, prepare_board_dir, write_board_files

SOFT_REBOOT = b"MPY: soft reboot\r\n"
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
_UNIX_BANNER = re.compile(rb"(MicroPython [^\r\n;]*; )linux[^\r\n]*")
_BANNER_START = b"MicroPython "
_PROMPT = b">>> "
CHIP_NAMES = {"esp32s3": "ESP32S3", "esp32c6": "ESP32C6"}

# Runs inside the interpreter at every (re)start: the board's _boot (its own LittleFS at "/", see
# device/sim/simboot.py), then boot.py, then main.py unless coming back to the raw REPL.
_UP = b"\x00fieldlink-up\x00"
_STARTUP = """\
import sys
import simboard, simboot
simboot.boot(simboard.setup(dir={board_dir!r}), main=globals())
del simboard, simboot
sys.stdout.write("\\x00fieldlink-up\\x00")
def _fl_run(n):
    try:
        f = open(n)
    except OSError:
        return
    s = f.read()
    f.close()
    try:
        exec(compile(s, n, "exec"), globals())
    except SystemExit:
        raise
    except BaseException as e:
        sys.print_exception(e)
_fl_run("boot.py")
if {run_main}:
    _fl_run("main.py")
del _fl_run
"""


@dataclass
class BoardStats:
    soft_resets: int = 0
    hard_resets: int = 0
    interrupts: int = 0
    starts: int = 0
    log: list[str] = field(default_factory=list)


class PtyBoard:
    """Supervisor for one virtual board. ``open()`` returns the port path; ``serve()`` runs until
    ``stop()`` (or SIGTERM/SIGINT when run from the CLI)."""

    def __init__(self, fs_dir: Path | str, *, board_name: str = "fieldlink virtual board",
                 chip: str = "esp32s3", micropython: str = "micropython", heapsize: str | None = None,
                 extra_env: dict[str, str] | None = None, partitions: list[dict[str, object]] | None = None,
                 espnow_v2: bool = False) -> None:
        self.fs_dir = Path(fs_dir).resolve()  # the board directory (flash/vfs.bin holds its filesystem)
        self.fs_dir.mkdir(parents=True, exist_ok=True)
        if partitions is not None or not (self.fs_dir / "sim_board.json").exists():
            write_board_files(self.fs_dir, name=board_name, chip=chip, partitions=partitions, espnow_v2=espnow_v2)
        self.board_name = board_name
        self.chip = CHIP_NAMES.get(chip, chip.upper())
        self.micropython = micropython
        self.heapsize = heapsize
        self.extra_env = dict(extra_env or {})
        self.stats = BoardStats()
        self.port: str | None = None
        self._master = -1
        self._slave = -1
        self._child_pid = 0
        self._child_fd = -1
        self._raw = False  # interpreter is in the raw REPL (tracked from the client's Ctrl-A/Ctrl-B)
        self._pending = bytearray()  # client bytes waiting for the interpreter to be ready
        self._since_intr = bytearray()  # bytes written after the last Ctrl-C (replayed if it killed the child)
        self._hold = False  # child not ready for input yet (raw-mode restart in progress)
        self._swallow = bytearray()  # output held back during a raw-mode restart
        self._outbuf = b""  # output held back while a banner line may be incomplete
        self._strip_crlf = False  # drop the CR LF the unix port prints before "raw REPL"
        self._running = False
        self._stop_r, self._stop_w = os.pipe()
        self._up = False
        self._upbuf = b""

    # ------------------------------------------------------------------------------------ lifecycle
    def open(self) -> str:
        self._master, self._slave = pty.openpty()
        tty.setraw(self._slave)
        attrs = termios.tcgetattr(self._slave)
        attrs[2] &= ~termios.HUPCL
        termios.tcsetattr(self._slave, termios.TCSANOW, attrs)
        fl = fcntl.fcntl(self._master, fcntl.F_GETFL)
        fcntl.fcntl(self._master, fcntl.F_SETFL, fl | os.O_NONBLOCK)
        self.port = os.ttyname(self._slave)
        return self.port

    def stop(self) -> None:
        self._running = False
        try:
            os.write(self._stop_w, b"x")
        except OSError:
            pass

    def close(self) -> None:
        self._kill_child()
        for fd in (self._master, self._slave, self._stop_r, self._stop_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = self._stop_r = self._stop_w = -1

    # ------------------------------------------------------------------------------------ interpreter
    def _spawn(self, run_main: bool, raw: bool) -> None:
        env = dict(os.environ)
        env.update(self.extra_env)
        env["MICROPYPATH"] = micropython_path()
        argv = [self.micropython]
        if self.heapsize:
            argv += ["-X", f"heapsize={self.heapsize}"]
        argv += ["-i", "-c", _STARTUP.format(run_main="True" if run_main else "False", board_dir=str(self.fs_dir))]
        pid, fd = pty.fork()
        if pid == 0:  # child
            try:
                attrs = termios.tcgetattr(0)
                attrs[0] = 0  # iflag
                attrs[1] = 0  # oflag: bytes out as written, like a UART
                attrs[3] = termios.ISIG | termios.NOFLSH  # lflag: Ctrl-C -> SIGINT -> KeyboardInterrupt
                attrs[6][termios.VMIN] = 1
                attrs[6][termios.VTIME] = 0
                termios.tcsetattr(0, termios.TCSANOW, attrs)
                os.chdir(self.fs_dir)  # the interpreter then mounts the board's own flash at "/"
                # Ctrl-C must not kill the interpreter while it starts (the pip micropython is a CPython
                # entry point); MicroPython installs its own SIGINT handler when it runs code
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        self._child_pid, self._child_fd = pid, fd
        self._raw = raw
        self._hold = raw
        self._up = False
        self._upbuf = b""
        self._swallow = bytearray()
        self._since_intr = bytearray()
        self.stats.starts += 1
        self._spawned_at = time.monotonic()

    def _kill_child(self) -> None:
        if self._child_pid:
            try:
                os.kill(self._child_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(self._child_pid, 0)
            except ChildProcessError:
                pass
            self._child_pid = 0
        if self._child_fd >= 0:
            os.close(self._child_fd)
            self._child_fd = -1

    def _reap(self) -> None:
        """The interpreter's side of its pty closed: collect its status and restart like the board."""
        status = 0
        if self._child_pid:
            try:
                _pid, status = os.waitpid(self._child_pid, 0)
            except ChildProcessError:
                status = 0
        self._child_pid = 0
        if self._child_fd >= 0:
            os.close(self._child_fd)
            self._child_fd = -1
        self._flush_out(final=True)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGINT:
            # Ctrl-C before the interpreter installed its handler: same as interrupting boot
            self.stats.interrupts += 1
            self.stats.log.append("interrupt")
            self._pending[:0] = self._since_intr
            self._to_client(b"\r\nKeyboardInterrupt: \r\n")
            self._spawn(run_main=False, raw=False)
        elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            self.stats.soft_resets += 1
            self.stats.log.append("soft-raw" if self._raw else "soft")
            self._to_client(SOFT_REBOOT)
            self._spawn(run_main=not self._raw, raw=self._raw)
        else:
            self.stats.hard_resets += 1
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
            # an interpreter that cannot start (exec failed: 127) or dies at once again and again is
            # not a board boot-looping: stop with one clear error instead of restarting forever
            quick = time.monotonic() - getattr(self, "_spawned_at", 0.0) < 1.0
            self._quick_exits = getattr(self, "_quick_exits", 0) + 1 if quick else 0
            if code == 127 or self._quick_exits >= 5:
                raise FieldlinkError(f"the MicroPython interpreter exits right after starting (status {code}); "
                                     "is --micropython a working MicroPython unix port?", where=self.micropython)
            self.stats.log.append(f"hard:{code}")
            self._to_client(f"ESP-ROM:{self.chip.lower()}-virtual\r\n"
                            "rst:0xc (RTC_SW_CPU_RST),boot:0x8 (SPI_FAST_FLASH_BOOT)\r\n".encode())
            self._spawn(run_main=True, raw=False)

    # ------------------------------------------------------------------------------------ relaying
    def _to_client(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + 0.5
        while view:
            try:
                n = os.write(self._master, view)
                view = view[n:]
            except BlockingIOError:
                # nobody reads the port: a UART without a listener drops output, so do we (after a grace)
                if time.monotonic() > deadline:
                    return
                time.sleep(0.005)
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return
                raise

    def _flush_out(self, final: bool = False) -> None:
        data = self._outbuf
        if not data:
            return
        data = _UNIX_BANNER.sub(lambda m: m.group(1) + f"{self.board_name} with {self.chip}".encode(), data)
        # hold back an incomplete banner line so it can be rewritten once complete
        start = data.rfind(_BANNER_START)
        if not final and start >= 0 and b"\n" not in data[start:]:
            self._to_client(data[:start])
            self._outbuf = data[start:]
            return
        if not final:
            for k in range(min(len(_BANNER_START) - 1, len(data)), 0, -1):
                if _BANNER_START.startswith(data[-k:]):
                    self._to_client(data[:-k])
                    self._outbuf = data[-k:]
                    return
        self._outbuf = b""
        self._to_client(data)

    def _from_child(self, data: bytes) -> None:
        if not self._up:
            # input is held until the interpreter runs code (its Ctrl-C handler is installed then)
            self._upbuf += data
            i = self._upbuf.find(_UP)
            if i < 0:
                return
            data = self._upbuf[:i] + self._upbuf[i + len(_UP):]
            self._upbuf = b""
            self._up = True
        if self._hold:
            # raw-mode restart: forward boot.py output, drop the friendly banner, then enter the raw REPL
            self._swallow += data
            i = self._swallow.find(_BANNER_START)
            if i < 0:
                keep = len(_BANNER_START) - 1
                if len(self._swallow) > keep:
                    self._to_client(bytes(self._swallow[:-keep]))
                    del self._swallow[:-keep]
                return
            if i > 0:
                self._to_client(bytes(self._swallow[:i]))
                del self._swallow[:i]
            p = self._swallow.find(_PROMPT)
            if p < 0:
                return
            self._swallow = bytearray()
            self._hold = False
            self._strip_crlf = True
            self._write_child(b"\x01")
            return
        if self._strip_crlf:
            buf = bytes(data)
            if buf.startswith(b"\r\n"):
                buf = buf[2:]
                self._strip_crlf = False
            elif buf and buf != b"\r":
                self._strip_crlf = False
            data = buf
        self._outbuf += data
        self._flush_out()

    def _write_child(self, data: bytes) -> None:
        if self._child_fd < 0:
            return
        try:
            os.write(self._child_fd, data)
        except OSError:
            pass

    def _deliver(self) -> None:
        if self._hold or not self._up or self._child_fd < 0 or not self._pending:
            return
        data = bytes(self._pending)
        self._pending = bytearray()
        for b in data:
            if b == 0x01:
                self._raw = True
            elif b == 0x02:
                self._raw = False
        i = data.rfind(b"\x03")
        if i >= 0:
            self._since_intr = bytearray(data[i + 1:])
        else:
            self._since_intr += data
            if len(self._since_intr) > 65536:
                self._since_intr = self._since_intr[-65536:]
        self._write_child(data)

    # ------------------------------------------------------------------------------------ main loop
    def serve(self, until: float | None = None) -> None:
        if self._master < 0:
            self.open()
        self._running = True
        if not self._child_pid:
            self._spawn(run_main=True, raw=False)
        while self._running and (until is None or time.monotonic() < until):
            fds = [self._master, self._stop_r]
            if self._child_fd >= 0:
                fds.append(self._child_fd)
            try:
                ready, _, _ = select.select(fds, [], [], 0.2)
            except InterruptedError:
                continue
            if self._stop_r in ready:
                break
            if self._master in ready:
                try:
                    data = os.read(self._master, 65536)
                except (BlockingIOError, InterruptedError):
                    data = b""
                except OSError as exc:
                    if exc.errno != errno.EIO:
                        raise
                    data = b""
                if data:
                    self._pending += data
            if self._child_fd >= 0 and self._child_fd in ready:
                try:
                    out = os.read(self._child_fd, 65536)
                except OSError:
                    out = b""
                if out:
                    self._from_child(out)
                else:
                    self._reap()
            elif self._outbuf:
                self._flush_out(final=True)
            self._deliver()


def run_board(fs_dir: Path | str, *, port_file: Path | str | None = None, board: str | None = None,
              micropython: str = "micropython", announce: bool = True) -> None:
    """Run a virtual board until SIGTERM/SIGINT; write its port path to ``port_file`` once it is ready."""
    from fieldlink_host.fsio import check_output, user_errors, write_text

    if port_file is not None:
        check_output(Path(port_file), "port file")  # before starting anything
    exe = micropython_binary(micropython)
    with user_errors(fs_dir, "cannot use the board directory"):
        name, chip, v2 = prepare_board_dir(fs_dir, board)
        pb = PtyBoard(fs_dir, board_name=name, chip=chip, micropython=exe, espnow_v2=v2)
    port = pb.open()

    def _term(_sig: int, _frm: object) -> None:
        pb.stop()

    previous = {s: signal.signal(s, _term) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if port_file is not None:
            write_text(port_file, port + "\n", "port file")
        if announce:
            print(f"virtual board {name} on {port} (flash {pb.fs_dir}/flash); Ctrl-C to stop", flush=True)
        pb.serve()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        pb.close()
        if port_file is not None:
            try:
                Path(port_file).unlink()
            except OSError:
                pass


class VirtualBoardProcess:
    """Run ``fieldlink board`` in a child process (for tests, benchmarks and scripts)::

        with VirtualBoardProcess(tmp / "fs") as vb:
            subprocess.run(["mpremote", "connect", vb.port, "fs", "ls"])
    """

    def __init__(self, fs_dir: Path | str, *, board: str | None = None, timeout: float = 15.0,
                 files: dict[str, bytes | str] | None = None) -> None:
        self.fs_dir = Path(fs_dir)  # the board directory; its filesystem is flash/vfs.bin (see .flash)
        self.board = board
        self.files = files
        self.timeout = timeout
        self.port = ""
        self.proc: object = None
        self._port_file = Path()

    def __enter__(self) -> VirtualBoardProcess:
        import subprocess
        import sys
        import tempfile

        self.fs_dir.mkdir(parents=True, exist_ok=True)
        if self.files:  # put files on the board's flash before it boots (like flashing an image)
            prepare_board_dir(self.fs_dir, self.board)
            BoardFlash(self.fs_dir).write(self.files)
        self._tmp = tempfile.mkdtemp(prefix="flboard-")
        self._port_file = Path(self._tmp) / "port"
        cmd = [sys.executable, "-m", "fieldlink_host", "board", "--dir", str(self.fs_dir),
               "--port-file", str(self._port_file)]
        if self.board:
            cmd += ["--board", self.board]
        self.log = open(Path(self._tmp) / "board.log", "w+b")  # noqa: SIM115
        self.proc = p = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.timeout
        while not self._port_file.exists():
            if p.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                raise FieldlinkError(f"virtual board did not start: {self.log.read().decode(errors='replace')}")
            time.sleep(0.02)
        self.port = self._port_file.read_text().strip()
        return self

    def __exit__(self, *exc: object) -> None:
        import shutil
        import subprocess

        p = self.proc
        assert isinstance(p, subprocess.Popen)
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.log.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    @property
    def flash(self) -> BoardFlash:
        """The board's filesystem as stored in its flash (read with littlefs-python)."""
        return BoardFlash(self.fs_dir)

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")
