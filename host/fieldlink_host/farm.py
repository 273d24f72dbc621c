"""A virtual farm: one air hub, one virtual gateway on a pseudo-terminal uplink, N virtual nodes.

Every board is a real ``micropython`` process running the real device code (``fieldlink.main.run``) on
the virtual board (device/sim). The host side reads the gateway's serial line exactly as it would read
a USB CDC port, through :class:`fieldlink_host.uplink.UplinkClient`. This is what ``fieldlink sim`` runs
and what the farm system tests use.
"""

from __future__ import annotations

import os
import select
import tempfile
import threading
import time
import tty
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fieldlink_host.errors import FieldlinkError
from fieldlink_host.fsio import from_os_error
from fieldlink_host.uplink import UplinkClient
from fieldlink_host.virtual import AirHub, VirtualBoard, start_air

GATEWAY_MAC = "02:fe:00:00:00:01"


def node_mac(i: int) -> str:
    return f"02:00:00:00:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}"


def mac_hex(mac: str) -> str:
    return mac.replace(":", "").lower()


def default_scenario(nodes: int, seed: int = 1) -> dict[str, Any]:
    """Greenhouse-like values: a day/night temperature and humidity (compressed to a 10-minute day so
    something visibly changes), a slightly different phase per node."""
    boards: dict[str, Any] = {
        "*": {
            "sht.temperature": {"type": "daynight", "mean": 22, "amplitude": 6, "period_s": 600, "noise": 0.2},
            "sht.humidity": {"type": "daynight", "mean": 60, "amplitude": -15, "period_s": 600, "noise": 0.5},
            "light.lux": {"type": "daynight", "mean": 8000, "amplitude": 8000, "period_s": 600},
            "air.volts": 0.9,
        }
    }
    for i in range(1, nodes + 1):
        boards[node_mac(i)] = {
            "sht.temperature": {"type": "daynight", "mean": 21 + i, "amplitude": 6, "period_s": 600,
                                "noise": 0.2, "phase": 40 * i, "seed": seed + i},
        }
    return {"seed": seed, "speed": 1.0, "boards": boards}


class PtyMasterPort:
    """The host end of a pseudo-terminal, with the two methods of a pyserial port the uplink client uses
    (``read``/``write``) plus ``close``. The slave end stays open here too, so the pty survives the
    gateway process restarting (like a USB CDC port that stays enumerated)."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self._closed = False

    def read(self, n: int) -> bytes:
        if self._closed:
            return b""
        ready, _, _ = select.select([self.master], [], [], 0.05)
        if not ready:
            return b""
        try:
            return os.read(self.master, n)
        except OSError:
            time.sleep(0.05)
            return b""

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            _, ok, _ = select.select([], [self.master], [], 1.0)
            if not ok:
                raise OSError("pseudo-terminal write timed out (gateway not reading)")
            n = os.write(self.master, view)
            view = view[n:]
        return len(data)

    def reset_input_buffer(self) -> int:
        """Discard whatever the gateway wrote that nobody read yet (like pyserial's method of that name,
        or a host process that died with bytes in its buffer). Returns the number of bytes dropped."""
        n = 0
        while not self._closed:
            ready, _, _ = select.select([self.master], [], [], 0)
            if not ready:
                break
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            n += len(chunk)
        return n

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            for fd in (self.master, self.slave):
                try:
                    os.close(fd)
                except OSError:
                    pass


@dataclass
class Farm:
    """Start with :meth:`start` (or as a context manager); :attr:`client` talks to the gateway."""

    nodes: int = 3
    workdir: Path | None = None
    node_board: str = "sim-node"
    gateway_board: str = "sim-gateway"
    scenario: Mapping[str, Any] | None = None
    seed: int = 1
    loss: float = 0.0
    pair_s: int = 600
    echo: bool = False
    #: merged into the ``options`` of the gateway / node board configs (e.g. ``{"ring_buffer": 16}``)
    gateway_options: Mapping[str, Any] | None = None
    node_options: Mapping[str, Any] | None = None
    #: extra default link parameters for the air hub (``dup``, ``latency_ms``, ...; ``loss`` is above)
    air_link: Mapping[str, float] | None = None
    air: AirHub | None = None
    gateway: VirtualBoard | None = None
    boards: list[VirtualBoard] = field(default_factory=list)
    client: UplinkClient | None = None
    port: PtyMasterPort | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> Farm:
        if self.nodes < 0 or self.nodes > 250:
            raise FieldlinkError(f"--nodes must be between 0 and 250, got {self.nodes}")
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="fieldlink-farm-")
            self.workdir = Path(self._tmp.name)
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise from_os_error(exc, self.workdir, "cannot create the farm directory") from None
        scenario = dict(self.scenario or default_scenario(self.nodes, self.seed))
        try:
            self.air = start_air(seed=self.seed)
            link = dict(self.air_link or {})
            if self.loss:
                link["loss"] = self.loss
            if link:
                self.air.set_link("*", "*", **link)
            self.port = PtyMasterPort()
            gw_board = _board_config(self.gateway_board, self.gateway_options)
            node_board = _board_config(self.node_board, self.node_options)
            self.gateway = VirtualBoard(self.workdir / "gateway", board=gw_board, mac=GATEWAY_MAC,
                                        air=self.air, name="gateway", echo=self.echo,
                                        env={"FIELDLINK_UPLINK": self.port.path})  # store: fl/data on its flash
            self.gateway.start()
            self.client = UplinkClient(self.port).open()  # type: ignore[arg-type]
            self.client.wait_for(lambda m: m.get("t") == "boot", timeout=20)
            self.client.pair_begin(self.pair_s, timeout=10)
            self.client.time_sync(timeout=10)  # like a bridge does on connect: schedules need the time
            for i in range(1, self.nodes + 1):
                d = self.workdir / f"node{i}"
                b = VirtualBoard(d, board=node_board, mac=node_mac(i), air=self.air, scenario=scenario,
                                 name=f"node{i}", echo=self.echo)
                b.start()
                self.boards.append(b)
        except BaseException:  # also Ctrl-C/SIGTERM while starting: stop what already runs
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        for b in self.boards:
            b.stop()
        if self.gateway is not None:
            self.gateway.stop()
        if self.air is not None:
            self.air.stop()
        if self.port is not None:
            self.port.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def disconnect(self) -> None:
        """The host goes away: the uplink client stops reading, acknowledging and sending heartbeats,
        while the pseudo-terminal stays open (the gateway keeps running and buffers)."""
        if self.client is not None:
            self.client.close()
            self.client = None

    def reconnect(self, flush: bool = True) -> UplinkClient:
        """The host comes back with a new :class:`UplinkClient` (which says ``hello``). With ``flush``
        the bytes the gateway wrote while nobody read are discarded first, as after a host restart."""
        if self.port is None:
            raise FieldlinkError("farm is not running")
        self.disconnect()
        if flush:
            self.port.reset_input_buffer()
        self.client = UplinkClient(self.port).open()  # type: ignore[arg-type]
        return self.client

    def __enter__(self) -> Farm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def node_names(self) -> dict[str, str]:
        """MAC (12 hex digits, as on the uplink) -> node name."""
        return {mac_hex(node_mac(i)): f"node{i}" for i in range(1, self.nodes + 1)}


def _board_config(board: str, options: Mapping[str, Any] | None) -> str | dict[str, Any]:
    """The board name as it is, or its device config with ``options`` merged in."""
    if not options:
        return board
    from fieldlink_host.boards import load_board
    cfg = load_board(board).device_config()
    cfg["options"] = {**cfg.get("options", {}), **dict(options)}
    return cfg


def _map(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def format_message(msg: Any, names: Mapping[str, str]) -> str | None:
    """One human-readable line for an uplink message, or None for bookkeeping messages. Any shape of
    message (a body that is a number, a list, missing keys) gives a line or None, never an exception."""
    msg = _map(msg)
    t = msg.get("t")
    src = names.get(str(msg.get("from", "")), str(msg.get("from", "")))
    d = _map(msg.get("d"))
    if t == "tel":
        # a batch holds several readings per sensor, oldest first: show the newest of each
        latest: dict[str, Mapping[str, Any]] = {}
        count = 0
        entries = d.get("r")
        for entry in entries if isinstance(entries, list | tuple) else ():
            if not isinstance(entry, list | tuple) or len(entry) < 2 or not isinstance(entry[1], Mapping):
                continue
            latest[str(entry[0])] = entry[1]
            count += 1
        parts = []
        for sensor, values in latest.items():
            vals = " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in values.items() if k not in ("valid", "error"))
            parts.append(f"{sensor}: {vals}")
        return f"{src:8} telemetry  {count:2} readings  rssi={msg.get('rssi')}  " + "; ".join(parts)
    if t == "evt":
        return f"{src:8} event      {d.get('ev')} severity={d.get('sev')} {d.get('d', '')}"
    if t == "nhb":
        return f"{src:8} heartbeat  up={d.get('up')}s boot={d.get('boot')} fw={d.get('fw')}"
    if t == "join":
        return f"{src:8} joined the gateway"
    if t == "boot":
        return f"gateway  started (fw {msg.get('fw')}, boot {msg.get('boot')})"
    if t == "log":
        return f"gateway  {msg.get('lvl')}: {msg.get('msg')}"
    return None


@dataclass
class FarmSummary:
    seconds: float
    telemetry: dict[str, int]
    events: int
    joined: list[str]


def run_farm(nodes: int = 3, seconds: float | None = None, *, seed: int = 1, loss: float = 0.0,
             workdir: Path | None = None, echo: bool = False, out: Callable[[str], None] = print,
             stop: threading.Event | None = None) -> FarmSummary:
    """Run a virtual farm, printing telemetry and events as the host receives them, until ``seconds``
    have passed, ``stop`` is set or Ctrl-C. Returns per-node telemetry counts."""
    t0 = time.monotonic()
    telemetry: dict[str, int] = {}
    joined: list[str] = []
    events = 0
    with Farm(nodes=nodes, workdir=workdir, seed=seed, loss=loss, echo=echo) as farm:
        names = farm.node_names()
        for name in names.values():
            telemetry[name] = 0
        out(f"farm: air hub {farm.air.address if farm.air else '?'}, gateway uplink {farm.port.path if farm.port else '?'}, "
            f"{nodes} nodes (workdir {farm.workdir})")
        assert farm.client is not None
        for msg in _messages(farm.client, t0, seconds, stop):
            line = format_message(msg, names)
            src = names.get(str(msg.get("from", "")))
            if msg.get("t") == "tel" and src:
                telemetry[src] += 1
            elif msg.get("t") == "evt":
                events += 1
            elif msg.get("t") == "join" and src:
                joined.append(src)
            if line:
                out(f"{time.monotonic() - t0:7.1f}s  {line}")
        elapsed = time.monotonic() - t0
        counts = ", ".join(f"{k}: {v}" for k, v in telemetry.items())
        out(f"farm: stopped after {elapsed:.1f} s; telemetry messages per node: {counts}")
    return FarmSummary(elapsed, telemetry, events, joined)


def _messages(client: UplinkClient, t0: float, seconds: float | None,
              stop: threading.Event | None) -> Iterator[dict[str, Any]]:
    while True:
        if seconds is not None and time.monotonic() - t0 >= seconds:
            return
        if stop is not None and stop.is_set():
            return
        msg = client.recv(timeout=0.2)
        if msg is not None:
            yield msg
