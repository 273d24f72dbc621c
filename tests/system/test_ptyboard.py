"""The virtual board on a pseudo-terminal behaves like MicroPython on an ESP32's USB serial: banner,
soft reboot (friendly and raw REPL), hard reset, Ctrl-C into a running main.py, and unmodified mpremote
(with and without `resume`) and ampy work against it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from fieldlink_host.ptyboard import VirtualBoardProcess

sys.path.insert(0, str(Path(__file__).parent))
from vboard_safety import assert_board_root_is_own  # noqa: E402


@pytest.fixture()
def board(tmp_path: Path) -> Iterator[VirtualBoardProcess]:
    files = {"boot.py": "print('boot.py ran')\n", "main.py": "print('main.py ran')\n"}
    with VirtualBoardProcess(tmp_path / "fs", board="esp32-c6-devkitc-1", files=files) as vb:
        yield vb


def _read_until(s: serial.Serial, marker: bytes, timeout: float = 30.0) -> bytes:
    out = b""
    end = time.monotonic() + timeout
    while marker not in out and time.monotonic() < end:
        out += s.read(4096)
    assert marker in out, out
    return out


def _mpremote(port: str, *args: str, timeout: float = 60) -> str:
    proc = subprocess.run([sys.executable, "-m", "mpremote", "connect", port, *args], capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_soft_reboot_from_friendly_repl(board: VirtualBoardProcess) -> None:
    with serial.Serial(board.port, 115200, timeout=0.2) as s:
        s.write(b"\r\x03\x02")  # interrupt, leave any raw REPL
        _read_until(s, b">>> ")
        s.write(b"x = 6 * 7\r\nprint(x)\r\n")
        assert b"42" in _read_until(s, b"42\n")  # the unix port prints LF where the firmware prints CR LF
        s.write(b"\x04")
        out = _read_until(s, b">>> ")
    assert out.index(b"MPY: soft reboot\r\n") < out.index(b"boot.py ran") < out.index(b"main.py ran")
    assert b"; esp32-c6-devkitc-1 with ESP32C6\r\nType \"help()\" for more information.\r\n>>> " in out
    assert b"linux" not in out


def test_soft_reboot_from_raw_repl_runs_boot_only(board: VirtualBoardProcess) -> None:
    with serial.Serial(board.port, 115200, timeout=0.2) as s:
        s.write(b"\r\x03\r\x01")
        _read_until(s, b"raw REPL; CTRL-B to exit\r\n>")
        s.write(b"\x04")
        out = _read_until(s, b"raw REPL; CTRL-B to exit\r\n>")
        assert out.startswith(b"OK\r\nMPY: soft reboot\r\n")
        assert b"boot.py ran" in out and b"main.py ran" not in out and b"MicroPython" not in out
        s.write(b"print(123)\x04")
        assert b"OK123" in _read_until(s, b"\x04>")
        s.write(b"\x02")
        _read_until(s, b">>> ")


def test_hard_reset_on_nonzero_exit(board: VirtualBoardProcess) -> None:
    with serial.Serial(board.port, 115200, timeout=0.2) as s:
        s.write(b"\r\x03\x02")
        _read_until(s, b">>> ")
        s.write(b"import sys\r\nsys.exit(5)\r\n")
        out = _read_until(s, b"rst:0xc", 15)  # (earlier prompts may still be in flight: wait for the reset)
        end = time.monotonic() + 15
        while b">>> " not in out[out.index(b"rst:0xc"):] and time.monotonic() < end:
            out += s.read(4096)
    assert b"rst:0xc (RTC_SW_CPU_RST)" in out and b"main.py ran" in out


def test_ctrl_c_interrupts_endless_main(tmp_path: Path) -> None:
    main = "import time\nprint('app running')\nwhile True:\n    time.sleep(0.05)\n"
    with VirtualBoardProcess(tmp_path / "fs", files={"main.py": main}) as vb:
        with serial.Serial(vb.port, 115200, timeout=0.2) as s:
            _read_until(s, b"app running")
            s.write(b"\x03")
            out = _read_until(s, b">>> ")
            assert b"KeyboardInterrupt" in out
        # mpremote against a board whose main.py loops forever (the usual case on hardware)
        s2 = serial.Serial(vb.port, 115200, timeout=0.2)
        s2.write(b"\x04")  # soft reboot at the REPL: main.py starts its endless loop again
        _read_until(s2, b"app running")
        s2.close()
        assert _mpremote(vb.port, "exec", "print('still ok', 2 + 3)").strip() == "still ok 5"


def test_mpremote_with_and_without_resume(board: VirtualBoardProcess) -> None:
    local = board.fs_dir.parent / "data.bin"
    local.write_bytes(bytes(range(256)) * 20)
    assert_board_root_is_own(board.port, board.fs_dir)
    _mpremote(board.port, "fs", "mkdir", ":sub")
    _mpremote(board.port, "fs", "cp", str(local), ":sub/data.bin")  # soft-resets on entry
    assert board.flash.read("sub/data.bin") == local.read_bytes()
    _mpremote(board.port, "exec", "state = 'kept'")
    # resume: no soft reset, so state survives; without it, the soft reset clears it
    assert _mpremote(board.port, "resume", "exec", "print(state)").strip() == "kept"
    out = subprocess.run([sys.executable, "-m", "mpremote", "connect", board.port, "exec", "print(state)"],
                         capture_output=True, text=True, timeout=60)
    assert "NameError" in out.stdout + out.stderr
    back = board.fs_dir.parent / "back.bin"
    _mpremote(board.port, "resume", "fs", "cp", ":sub/data.bin", str(back))
    assert back.read_bytes() == local.read_bytes()
    digest = __import__("hashlib").sha256(local.read_bytes()).hexdigest()
    assert digest in _mpremote(board.port, "resume", "fs", "sha256sum", ":sub/data.bin")
    assert "MPY: soft reboot" not in board.output()  # the supervisor itself logs nothing per reset


def test_ampy_put_get_ls(board: VirtualBoardProcess) -> None:
    local = board.fs_dir.parent / "a.txt"
    local.write_text("hello ampy\n" * 50)

    def ampy(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "ampy.cli", "-p", board.port, *args], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    assert_board_root_is_own(board.port, board.fs_dir)
    ampy("mkdir", "adir")
    ampy("put", str(local), "adir/a.txt")
    assert board.flash.read("adir/a.txt") == local.read_bytes()
    assert ampy("get", "adir/a.txt").rstrip("\n") == local.read_text().rstrip("\n")
    assert ampy("ls").split() == ["/adir", "/boot.py", "/main.py"]  # the board's root, not the host's
    ampy("rm", "adir/a.txt")
    assert "adir/a.txt" not in board.flash.files()
