"""`fieldlink ota push`: a staged OTA rollout through a gateway (fieldlink_host.ota.rollout).

``add_push(ota_subparsers)`` adds the ``push`` subcommand to an ``ota`` command; ``register`` creates
that ``ota`` command when no other module did (commands/ota.py adds ``make`` and ``inspect``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from fieldlink_host.errors import FieldlinkError
from fieldlink_host.ota.rollout import (
    GatewayPort,
    Rollout,
    RolloutState,
    UpdateImage,
    format_table,
    load_image,
    resolve_targets,
)
from fieldlink_host.progress import Progress

EXAMPLES = """examples:
  fieldlink ota push fw.bin.ota.json --port /dev/ttyACM0 --to all --canary 10 --halt-on 2
  fieldlink ota push build/app/ota.json --port /dev/ttyACM0 --to 02000000000b,02000000000c
  fieldlink ota push fw.bin.ota.json --port /dev/ttyACM0 --to @greenhouse --groups groups.json --battery 40
The rollout state is kept in MANIFEST.rollout.json (--state): running the same command again after an
interruption continues the rollout. Exit status 0 when every node runs the new version, 1 otherwise.
"""


def push(manifest: Path, port: str | GatewayPort, to: str, *, canary: float = 10, halt_on: int = 1,
         battery: int = 0, state: Path | None = None, groups: Path | None = None, confirm_timeout: float = 300,
         wave_timeout: float = 3600, baud: int = 921600, progress: bool | None = None,
         on_change: Callable[[RolloutState], None] | None = None) -> RolloutState:
    """Run (or continue) a rollout; returns its final state (``halted``/``reason`` set when it stopped).
    ``port``: a serial port name, or an open gateway connection (an UplinkClient)."""
    image = load_image(manifest)
    state_path = state or manifest.with_name(manifest.name + ".rollout.json")
    if isinstance(port, str):
        from fieldlink_host.uplink import UplinkClient
        with UplinkClient(port, baud=baud) as gw:
            return _push(gw, image, to, state_path, canary, halt_on, battery, groups, confirm_timeout,
                         wave_timeout, progress, on_change)
    return _push(port, image, to, state_path, canary, halt_on, battery, groups, confirm_timeout, wave_timeout,
                 progress, on_change)


def _push(gw: GatewayPort, image: UpdateImage, to: str, state_path: Path, canary: float, halt_on: int,
          battery: int, groups: Path | None, confirm_timeout: float, wave_timeout: float,
          progress: bool | None, on_change: Callable[[RolloutState], None] | None) -> RolloutState:
    targets = [] if state_path.exists() else resolve_targets(to, gw, groups)
    total = max(1, len(targets)) * 100
    with Progress("ota push", total, unit="%", enabled=progress) as bar:
        def changed(st: RolloutState) -> None:
            bar.total = max(1, len(st.nodes)) * 100
            done = sum(100 if n.terminal else (n.progress or 0) for n in st.nodes.values())
            ok = sum(1 for n in st.nodes.values() if n.result == "updated")
            bad = sum(1 for n in st.nodes.values() if n.result in ("failed", "rolled_back"))
            bar.update(int(done), f"wave {min(st.wave + 1, len(st.waves))}/{len(st.waves)} "
                                  f"{ok} updated {bad} failed")
            if on_change is not None:
                on_change(st)
        ro = Rollout(gw, image, targets, state_path=state_path, canary_pct=canary, halt_on=halt_on,
                     battery=battery, confirm_timeout=confirm_timeout, wave_timeout=wave_timeout, on_change=changed)
        return ro.run().state


def _run(args: argparse.Namespace) -> int:
    st = push(args.manifest, args.port, args.to, canary=args.canary, halt_on=args.halt_on, battery=args.battery,
              state=args.state, groups=args.groups, confirm_timeout=args.confirm_timeout,
              wave_timeout=args.wave_timeout, baud=args.baud)
    print(format_table(st))
    if st.halted:
        raise FieldlinkError(f"rollout halted: {st.reason}", "ota push")
    return 0 if all(n.result == "updated" for n in st.nodes.values()) else 1


def add_push(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("push", help="staged rollout of a signed update through a gateway",
                       description="Upload a signed update to the gateway and roll it out over ESP-NOW: "
                                   "canaries first, then waves; a failed or rolled-back canary halts.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", type=Path, metavar="MANIFEST", help="signed manifest (X.ota.json or BUNDLE/ota.json)")
    p.add_argument("--port", "-p", required=True, help="the gateway's serial port")
    p.add_argument("--to", required=True, help="all | MAC[,MAC...] | @GROUP")
    p.add_argument("--canary", type=float, default=10, metavar="N", help="percent of the nodes updated first (default 10)")
    p.add_argument("--halt-on", type=int, default=1, metavar="K", help="halt after K failed nodes (default 1)")
    p.add_argument("--battery", type=int, default=0, metavar="PCT",
                   help="a node starts only with its battery at or above PCT %% (default 0: no threshold)")
    p.add_argument("--groups", type=Path, help="JSON file of groups for --to @GROUP")
    p.add_argument("--state", type=Path, help="rollout state file (default MANIFEST.rollout.json)")
    p.add_argument("--confirm-timeout", type=float, default=300, metavar="S",
                   help="seconds for a node to confirm the new version after the transfer (default 300)")
    p.add_argument("--wave-timeout", type=float, default=3600, metavar="S", help="seconds per wave (default 3600)")
    p.add_argument("--baud", type=int, default=921600)
    p.set_defaults(func=_run)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ota = sub.choices.get("ota")
    if ota is None:
        ota = sub.add_parser("ota", help="over-the-air updates", description="Over-the-air updates.")
        ota.set_defaults(func=lambda a: (ota.print_help(sys.stderr), 2)[1])
        osub = ota.add_subparsers(dest="ota_command", metavar="SUBCOMMAND")
    else:   # commands/ota.py registered the command already: add push to its subcommands
        found = [a for a in ota._actions if isinstance(a, argparse._SubParsersAction)]
        if not found:
            return
        osub = found[0]
        if "push" in osub.choices:
            return
    add_push(osub)
