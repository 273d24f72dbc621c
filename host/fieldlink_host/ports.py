"""Serial ports with their USB VID/PID and a guess of what is attached."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

#: (VID, PID) -> (description, suggested esptool baud)
KNOWN_USB: dict[tuple[int, int], tuple[str, int]] = {
    (0x303A, 0x1001): ("Espressif USB-JTAG/serial: ESP32-S3/C6 native USB", 921600),
    (0x303A, 0x4001): ("Espressif TinyUSB CDC: ESP32-S3 running MicroPython (native USB)", 921600),
    (0x303A, 0x0002): ("Espressif ESP32-S3 USB-OTG download mode", 921600),
    (0x10C4, 0xEA60): ("Silicon Labs CP210x USB-UART bridge (DevKitC, ...)", 921600),
    (0x1A86, 0x7523): ("WCH CH340 USB-UART bridge", 460800),
    (0x1A86, 0x55D4): ("WCH CH9102 USB-UART bridge", 460800),
    (0x1A86, 0x55D3): ("WCH CH343 USB-UART bridge", 921600),
    (0x0403, 0x6001): ("FTDI FT232R USB-UART", 921600),
    (0x0403, 0x6010): ("FTDI FT2232 (ESP-Prog)", 921600),
    (0x0403, 0x6015): ("FTDI FT231X USB-UART", 921600),
}
VENDORS = {0x303A: "Espressif", 0x10C4: "Silicon Labs", 0x1A86: "WCH", 0x0403: "FTDI"}
DEFAULT_BAUD = 460800


@dataclass(frozen=True)
class PortInfo:
    device: str
    vid: int | None
    pid: int | None
    description: str
    serial_number: str | None
    guess: str
    baud: int

    @property
    def usb_id(self) -> str:
        return f"{self.vid:04X}:{self.pid:04X}" if self.vid is not None and self.pid is not None else "-"


def guess_board(vid: int | None, pid: int | None) -> tuple[str, int]:
    """A human guess of what is attached and the esptool baud rate to use with it."""
    if vid is None or pid is None:
        return ("not USB (built-in UART or pseudo-terminal)", 115200)
    if (vid, pid) in KNOWN_USB:
        return KNOWN_USB[(vid, pid)]
    if vid in VENDORS:
        return (f"{VENDORS[vid]} device {vid:04X}:{pid:04X}", DEFAULT_BAUD)
    return ("unknown USB serial device", DEFAULT_BAUD)


def _comports() -> list[Any]:
    from serial.tools import list_ports

    return list(list_ports.comports())


def list_ports(comports: Callable[[], Iterable[Any]] = _comports) -> list[PortInfo]:
    out = []
    for p in comports():
        vid, pid = getattr(p, "vid", None), getattr(p, "pid", None)
        guess, baud = guess_board(vid, pid)
        out.append(PortInfo(str(p.device), vid, pid, str(getattr(p, "description", "") or ""),
                            getattr(p, "serial_number", None), guess, baud))
    return sorted(out, key=lambda x: x.device)


def port_info(device: str, comports: Callable[[], Iterable[Any]] = _comports) -> PortInfo | None:
    for p in list_ports(comports):
        if p.device == device:
            return p
    return None
