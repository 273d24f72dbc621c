"""`fieldlink monitor`: serial console with fieldlink frames decoded as JSON lines."""

from __future__ import annotations

import argparse

from fieldlink_host.monitor import monitor

EXAMPLES = """examples:
  fieldlink monitor --port /dev/ttyACM0                 console text, frames as {"frame": ...} lines
  fieldlink monitor --port /dev/ttyACM0 --frames-only | jq .frame
  fieldlink monitor --port /dev/pts/3 --seconds 10      a virtual board, for 10 s
Stop with Ctrl-C.
"""


def _run(args: argparse.Namespace) -> int:
    monitor(args.port, baud=args.baud, seconds=args.seconds, raw_frames_only=args.frames_only)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("monitor", help="serial console with decoded fieldlink frames",
                       description="Show a board's serial console; fieldlink frames are printed as JSON lines.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", "-p", required=True, help="serial port")
    p.add_argument("--baud", type=int, default=115200, help="baud rate (default 115200; the gateway uplink uses 921600)")
    p.add_argument("--seconds", type=float, help="stop after this many seconds")
    p.add_argument("--frames-only", action="store_true", help="print only the frames (JSON lines)")
    p.set_defaults(func=_run)
