"""Running the bridge as a process: ``fieldlink bridge`` and ``fieldlink sim --web/--mqtt/--db``."""

from __future__ import annotations

import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fieldlink_host.bridge.config import BridgeConfig
from fieldlink_host.bridge.core import Bridge, PortSpec


def redact(url: str | None) -> str | None:
    """A broker URL without its password (never logged)."""
    if not url:
        return url
    u = urlsplit(url)
    if u.password is None:
        return url
    return urlunsplit(u._replace(netloc=f"{u.username}:***@{u.hostname}" + (f":{u.port}" if u.port else "")))


def _wait(stop: threading.Event, seconds: float | None) -> None:
    prev = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    if prev is not None:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        end = None if seconds is None else time.monotonic() + seconds
        while not stop.is_set():
            if end is not None and time.monotonic() >= end:
                return
            stop.wait(0.2)
    finally:
        if prev is not None:
            signal.signal(signal.SIGTERM, prev)


def run_bridge(cfg: BridgeConfig, port: PortSpec | None = None, *, seconds: float | None = None,
               stop: threading.Event | None = None, out: Callable[[str], None] = print) -> Bridge:
    """Run until ``seconds`` passed, ``stop`` is set, SIGTERM or Ctrl-C. Returns the (stopped) bridge."""
    from fieldlink_host.bridge.web import WebServer

    bridge = Bridge(cfg, port)
    stop = stop or threading.Event()
    web: WebServer | None = None
    bridge.start()
    try:
        if cfg.web.listen:
            web = WebServer(bridge).start()
        out(f"bridge {cfg.bridge_id}: db {cfg.db}, mqtt {redact(cfg.mqtt.url) or 'off (storing only)'}, "
            f"web {'http://' + cfg.web.listen if cfg.web.listen else 'off'}, topics {bridge.topics.root}/...")
        _wait(stop, seconds)
    except KeyboardInterrupt:
        pass
    finally:
        if web is not None:
            web.stop()
        bridge.stop()
    return bridge


def run_farm_bridge(cfg: BridgeConfig, nodes: int = 3, seconds: float | None = None, *, seed: int = 1,
                    loss: float = 0.0, workdir: Path | None = None, echo: bool = False,
                    out: Callable[[str], None] = print, stop: threading.Event | None = None,
                    farm_kw: dict[str, Any] | None = None) -> Bridge:
    """The virtual farm with the bridge on its gateway port (``fieldlink sim --web/--mqtt/--db``)."""
    from fieldlink_host.farm import Farm

    with Farm(nodes=nodes, workdir=workdir, seed=seed, loss=loss, echo=echo, **(farm_kw or {})) as farm:
        tmp: tempfile.TemporaryDirectory[str] | None = None
        if cfg.db is None:
            tmp = tempfile.TemporaryDirectory(prefix="fieldlink-bridge-")
            cfg.db = str(Path(tmp.name) / "sim.db")
        farm.disconnect()                 # the bridge owns the gateway port from now on
        port = farm.port
        assert port is not None
        out(f"farm: {nodes} virtual nodes, gateway uplink {port.path}")
        try:
            return run_bridge(cfg, lambda: port, seconds=seconds, stop=stop, out=out)  # type: ignore[arg-type,return-value]
        finally:
            if tmp is not None:
                tmp.cleanup()
