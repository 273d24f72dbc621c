"""`fieldlink sim`: run a virtual farm (gateway + N nodes under MicroPython) and print what the host receives."""

from __future__ import annotations

import argparse
import math
import signal
from pathlib import Path

from fieldlink_host.errors import FieldlinkError, Terminated
from fieldlink_host.farm import run_farm

EXAMPLES = """examples:
  fieldlink sim                         gateway + 3 nodes until Ctrl-C
  fieldlink sim --seconds 10            stop after 10 s
  fieldlink sim --nodes 10 --loss 0.2   10 nodes over a radio that loses 20% of frames
  fieldlink sim --workdir farm/ --echo  keep the boards' flash/NVS in farm/ and show their consoles
  fieldlink sim --web 127.0.0.1:8080    the farm with the bridge: fleet page, GET /api/devices lists the nodes
  fieldlink sim --web 127.0.0.1:8080 --mqtt mqtt://127.0.0.1:1883 --db farm.db
                                        ... publishing to a broker (Home Assistant discovery), stored in farm.db
"""


def _terminate(_sig: int, _frame: object) -> None:
    # SIGTERM cleans up exactly like Ctrl-C: the Farm context manager stops every board and the air
    # hub and removes the temporary workdir on the way out
    raise Terminated


def _run(args: argparse.Namespace) -> int:
    if args.seconds is not None and not (math.isfinite(args.seconds) and args.seconds > 0):
        raise FieldlinkError(f"--seconds must be a positive number, got {args.seconds}")
    if not (math.isfinite(args.loss) and 0.0 <= args.loss <= 1.0):
        raise FieldlinkError(f"--loss must be between 0 and 1, got {args.loss}")
    if args.workdir is not None:
        from fieldlink_host.fsio import user_errors

        with user_errors(args.workdir, "cannot use the work directory"):
            Path(args.workdir).mkdir(parents=True, exist_ok=True)
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (library use): the caller handles signals
        previous = None
    try:
        if args.web or args.mqtt or args.db:
            from fieldlink_host.bridge.config import load_config
            from fieldlink_host.bridge.run import run_farm_bridge
            cfg = load_config(None, env={}, db=args.db, mqtt_url=args.mqtt, web_listen=args.web,
                              bridge_id="sim", site="sim", heartbeat_s=30)
            bridge = run_farm_bridge(cfg, nodes=args.nodes, seconds=args.seconds, seed=args.seed, loss=args.loss,
                                     workdir=Path(args.workdir) if args.workdir else None, echo=args.echo)
            return 0 if len(bridge.devices) >= args.nodes else 3
        summary = run_farm(nodes=args.nodes, seconds=args.seconds, seed=args.seed, loss=args.loss,
                           workdir=Path(args.workdir) if args.workdir else None, echo=args.echo)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
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
    p.add_argument("--web", default=None, metavar="HOST:PORT", help="run the bridge and serve the fleet page here")
    p.add_argument("--mqtt", default=None, metavar="URL", help="run the bridge publishing to this broker")
    p.add_argument("--db", default=None, metavar="FILE", help="run the bridge storing into FILE (default: temporary)")
    p.set_defaults(func=_run)
