"""flash: the esptool command is right, esptool's own parser accepts it and, run against a pseudo-terminal,
esptool speaks its protocol there (SLIP-framed SYNC) at the chosen port; ports: VID/PID guesses."""

from __future__ import annotations

import importlib.util
import os
import pty
import select
import subprocess
import time
import tty
from pathlib import Path
from types import SimpleNamespace

import pytest
from fieldlink_host.boards import load_board
from fieldlink_host.build import build_bundle
from fieldlink_host.cli import main
from fieldlink_host.errors import FieldlinkError
from fieldlink_host.flash import check_image, plan_flash
from fieldlink_host.image import build_image
from fieldlink_host.ports import guess_board, list_ports

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "build"


def _espimage():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("espimage", ROOT / "tests" / "fixtures" / "esp" / "espimage.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("img")
    esp = _espimage()
    (d / "fw.bin").write_bytes(esp.make_image("esp32c6", 3000))
    (d / "bl.bin").write_bytes(esp.make_image("esp32c6", 2000, bootloader=True))
    board = load_board("esp32-c6-devkitc-1")
    bundle = build_bundle(board, d / "bundle", device_pkg=FIX / "device" / "fieldlink", revision="r")
    build_image(board, d / "fw.bin", d / "img.bin", bundle=bundle, bootloader=d / "bl.bin")
    return d / "img.bin"


def test_plan_arguments(image: Path) -> None:
    p = plan_flash("/dev/ttyUSB7", image, board="esp32-c6-devkitc-1", baud=460800)
    assert p.argv[1:3] == ["-m", "esptool"]
    args = p.argv[3:]
    assert args[:6] == ["--chip", "esp32c6", "--port", "/dev/ttyUSB7", "--baud", "460800"]
    assert args[args.index("--before") + 1] == "default-reset" and args[args.index("--after") + 1] == "hard-reset"
    assert args[-4:] == ["write-flash", "--compress", "0x0", str(image)]
    auto = plan_flash("/dev/ttyUSB7", image)
    assert auto.chip == "auto" and auto.argv[auto.argv.index("--chip") + 1] == "auto"
    with pytest.raises(FieldlinkError, match="contradicts"):
        plan_flash("/dev/x", image, board="esp32-c6-devkitc-1", chip="esp32s3")


def test_rejects_non_images(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(b"\xff" * 0x9000)
    with pytest.raises(FieldlinkError, match="no ESP image header"):
        check_image(tmp_path / "x.bin")
    (tmp_path / "y.bin").write_bytes(b"\xe9" + b"\xff" * 100)
    with pytest.raises(FieldlinkError, match="partition table"):
        check_image(tmp_path / "y.bin")


def test_esptool_parser_accepts_the_command(image: Path) -> None:
    p = plan_flash("/dev/ttyUSB7", image, board="esp32-c6-devkitc-1", baud=921600)
    # esptool's own (click) parser: the global options and write-flash's options must all be known
    proc = subprocess.run(p.argv[:-2] + ["--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--compress" in proc.stdout and "write-flash" in proc.stdout.lower().replace("_", "-")
    bad = subprocess.run(p.argv + ["--no-such-option"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0  # and a wrong option would have been refused


def test_esptool_speaks_slip_sync_on_the_port(image: Path) -> None:
    master, slave = pty.openpty()
    tty.setraw(slave)
    port = os.ttyname(slave)
    p = plan_flash(port, image, board="esp32-c6-devkitc-1", baud=460800, no_reset=True, connect_attempts=1)
    proc = subprocess.Popen(p.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    got = b""
    end = time.monotonic() + 30
    while time.monotonic() < end and proc.poll() is None and len(got) < 46:
        r, _, _ = select.select([master], [], [], 0.1)
        if r:
            got += os.read(master, 4096)
    proc.kill()
    out = proc.communicate()[0].decode(errors="replace")
    os.close(master)
    os.close(slave)
    # SLIP frame: C0, direction 0x00, command 0x08 (SYNC), length 36, checksum 0, 07 07 12 20, 32 x 0x55, C0
    sync = bytes([0xC0, 0x00, 0x08, 0x24, 0x00, 0, 0, 0, 0, 0x07, 0x07, 0x12, 0x20]) + b"\x55" * 32 + b"\xc0"
    assert got.startswith(sync), (got[:60].hex(), out)
    assert port in out


def test_dry_run_cli(image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flash", "--port", "/dev/ttyACM9", "--image", str(image), "--dry-run", "--chip", "esp32c6"]) == 0
    assert "write-flash --compress 0x0" in capsys.readouterr().out
    assert main(["flash", "--port", "/dev/ttyACM9", "--image", "/nonexistent.bin", "--dry-run"]) == 1
    assert "cannot read image" in capsys.readouterr().err


def test_port_guesses() -> None:
    assert "ESP32-S3/C6 native USB" in guess_board(0x303A, 0x1001)[0]
    assert "CP210x" in guess_board(0x10C4, 0xEA60)[0] and guess_board(0x10C4, 0xEA60)[1] == 921600
    assert "CH340" in guess_board(0x1A86, 0x7523)[0] and guess_board(0x1A86, 0x7523)[1] == 460800
    assert guess_board(0x1234, 0x5678)[0] == "unknown USB serial device"
    fake = [SimpleNamespace(device="/dev/ttyUSB0", vid=0x1A86, pid=0x7523, description="USB Serial", serial_number=None),
            SimpleNamespace(device="/dev/ttyACM0", vid=0x303A, pid=0x1001, description="USB JTAG/serial debug unit",
                            serial_number="F4:12"),
            SimpleNamespace(device="/dev/ttyS0", vid=None, pid=None, description="n/a", serial_number=None)]
    ports = list_ports(lambda: fake)
    assert [p.device for p in ports] == ["/dev/ttyACM0", "/dev/ttyS0", "/dev/ttyUSB0"]
    assert ports[0].usb_id == "303A:1001" and ports[1].usb_id == "-"


def test_ports_cli_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ports"]) == 0
    assert capsys.readouterr().out.strip()
