"""`fieldlink sim`: run a virtual farm (gateway + N nodes under MicroPython) and print what the host receives."""

from __future__ import annotations

import argparse
from pathlib import Path

from fieldlink_host.farm import run_farm

EXAMPLES = """examples:
  fieldlink sim                         gateway + 3 nodes until Ctrl-C
  fieldlink sim --seconds 10            stop after 10 s
  fieldlink sim --nodes 10 --loss 0.2   10 nodes over a radio that loses 20% of frames
  fieldlink sim --workdir farm/ --echo  keep the boards' flash/NVS in farm/ and show their consoles
"""


def _run(args: argparse.Namespace) -> int:
    summary = run_farm(nodes=args.nodes, seconds=args.seconds, seed=args.seed, loss=args.loss,
                       workdir=Path(args.workdir) if args.workdir else None, echo=args.echo)
    return 0 if all(summary.telemetry.values()) or args.nodes == 0 else 3


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "sim",
        help="run a virtual farm: gateway + nodes on the virtual board",
        description="Start an air hub, a virtual gateway (uplink on a pseudo-terminal) and N virtual nodes, "
                    "each a micropython process running the real device code, and print the telemetry and "
                    "events the host receives. Exit code 3 if a node sent no telemetry.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    p.add_argument("--seconds", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    p.add_argument("--seed", type=int, default=1, help="seed for the radio and the scenario")
    p.add_argument("--loss", type=float, default=0.0, help="frame loss on every radio link, 0..1")
    p.add_argument("--workdir", default=None, help="keep board directories here (default: a temporary dir)")
    p.add_argument("--echo", action="store_true", help="show the boards' console output")
    p.set_defaults(func=_run)
