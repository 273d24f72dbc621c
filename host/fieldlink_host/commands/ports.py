"""`fieldlink ports`: serial ports with USB VID:PID and a guess of the board."""

from __future__ import annotations

import argparse

from fieldlink_host.ports import list_ports

EXAMPLES = """examples:
  fieldlink ports            e.g. /dev/ttyACM0  303A:1001  Espressif USB-JTAG/serial: ESP32-S3/C6 native USB
"""


def _run(args: argparse.Namespace) -> int:
    ports = list_ports()
    if not ports:
        print("no serial ports found (is the board plugged in? on Linux, are you in the dialout group?)")
        return 0
    for p in ports:
        print(f"{p.device:18} {p.usb_id:9}  {p.guess}  [{p.description}]")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("ports", help="list serial ports and guess the attached boards",
                       description="List serial ports with USB VID:PID and a guess of the attached board.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=_run)
