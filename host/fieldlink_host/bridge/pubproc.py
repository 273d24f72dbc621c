"""The MQTT publisher in a process of its own (``[mqtt] process = true``, the default).

Why: CPython runs one thread at a time. paho's per-message work (PUBACK parsing, in-flight bookkeeping)
costs about as much as the whole serial side (decode, derive, SQLite), so in one process the two take
turns on one core and the bridge reaches about half of what a bare paho publisher does (bench/bridge.py,
docs/bridge.md "Performance"). In its own process the publisher (the same
:class:`~fieldlink_host.bridge.mqtt.Publisher`) runs on the other core, reading the outbox from the
SQLite file (WAL: readers never wait for the writer) and keeping the durable cursor there.

Parent <-> child: msgpack arrays over the child's stdin/stdout. Parent -> child: ``["cfg", {...}]``
first (the password never appears on a command line), then ``["n"]`` (new outbox rows) and ``["stop"]``
(publish ``offline`` on the bridge state, save the cursor, disconnect). Child -> parent: ``["st",
connected, cursor, stats]`` whenever something changed (at most every 20 ms) and ``["msg", topic,
payload]`` for each MQTT message received (commands, requests). End of stdin without ``stop`` (the
bridge was killed) ends the child at once, without a DISCONNECT, so the broker publishes the last will.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import msgpack

from fieldlink_host.bridge.config import MqttConfig
from fieldlink_host.bridge.store import Store
from fieldlink_host.errors import FieldlinkError

log = logging.getLogger("fieldlink.bridge.mqtt")

STATUS_S = 0.02


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[attr-defined,no-any-return]  # stubs lack it


class ProcessPublisher:
    """Same interface as :class:`~fieldlink_host.bridge.mqtt.Publisher` (``start``, ``stop``, ``notify``,
    ``backlog``, ``connected``, ``cursor``, ``stats``); the work happens in a child process."""

    def __init__(self, cfg: MqttConfig, store: Store, *, client_id: str, will_topic: str,
                 subscriptions: list[str], on_message: Callable[[str, bytes], None],
                 synchronous: str = "FULL") -> None:
        self.cfg = cfg
        self.store = store
        self._child_cfg = {"mqtt": asdict(cfg), "db": str(store.path), "synchronous": synchronous,
                           "client_id": client_id, "will_topic": will_topic, "subscriptions": subscriptions}
        self._on_message = on_message
        self.connected = threading.Event()
        self.cursor = store.get_meta("published")
        self.stats: dict[str, int] = {"published": 0, "republished": 0, "connects": 0, "disconnects": 0,
                                      "publish_errors": 0, "rx": 0}
        self._proc: subprocess.Popen[bytes] | None = None
        self._wlock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._stopping = threading.Event()
        self._trimmed = 0

    def start(self) -> None:
        self._spawn()
        self._reader = threading.Thread(target=self._read, name="fl-mqtt-proc", daemon=True)
        self._reader.start()

    def _spawn(self) -> None:
        env = dict(os.environ)
        here = str(Path(__file__).resolve().parents[2])      # the directory holding fieldlink_host
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "fieldlink_host.bridge.pubproc"],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        except OSError as exc:
            raise FieldlinkError(f"mqtt: cannot start the publisher process: {exc}") from exc
        self._send(["cfg", self._child_cfg])

    def _send(self, msg: list[Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        with self._wlock:
            try:
                proc.stdin.write(_pack(msg))
                proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass   # the child is gone; stop() reports nothing more useful

    def notify(self) -> None:
        self._send(["n"])

    def backlog(self) -> int:
        return self.store.outbox_pending(self.cursor)

    def trim(self) -> None:
        """Delete the outbox rows the broker acknowledged (the bridge's housekeeping calls this): they are
        no longer needed, and after a restart the publisher starts after its saved cursor anyway."""
        cur = self.cursor
        if cur > self._trimmed:
            self.store.trim_outbox(cur)
            self._trimmed = cur

    def _read(self) -> None:
        backoff = 1.0
        while True:
            proc = self._proc
            if proc is None or proc.stdout is None:
                return
            unpacker = msgpack.Unpacker(raw=False)
            fd = proc.stdout.fileno()
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                backoff = 1.0
                unpacker.feed(data)
                for msg in unpacker:
                    try:
                        self._handle(msg)
                    except Exception:  # a consumer bug must not stop the status/command path
                        log.exception("mqtt: handling %r from the publisher process failed", msg[:1])
            self.connected.clear()
            if self._stopping.wait(backoff):
                return
            # the publisher process died on its own: start another (it resumes after the durable cursor)
            log.warning("mqtt: the publisher process ended (exit %s); starting it again", proc.poll())
            self.stats["restarts"] = self.stats.get("restarts", 0) + 1
            backoff = min(backoff * 2, 30.0)
            try:
                proc.wait(5)
                if proc.stdout is not None:
                    proc.stdout.close()
                self._spawn()
            except (FieldlinkError, subprocess.TimeoutExpired) as exc:
                log.warning("mqtt: %s", exc)

    def _handle(self, msg: list[Any]) -> None:
        if msg[0] == "st":
            _, connected, cursor, stats = msg
            self.cursor = int(cursor)
            self.stats.update(stats)
            if connected:
                self.connected.set()
            else:
                self.connected.clear()
        elif msg[0] == "msg":
            self._on_message(str(msg[1]), bytes(msg[2]))

    def stop(self, timeout: float = 3.0) -> None:
        self._stopping.set()
        proc = self._proc
        if proc is None:
            return
        self._send(["stop"])
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout + 2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._reader is not None:
            self._reader.join(2)
        if proc.stdout is not None:
            proc.stdout.close()
        self._proc = None
        self.connected.clear()


# ---------------------------------------------------------------------- the child
def _child(stdin: IO[bytes], stdout: IO[bytes]) -> int:
    from fieldlink_host.bridge.mqtt import Publisher

    # the bridge stops us (Ctrl-C goes to the whole process group, a service manager's SIGTERM to the
    # whole cgroup): a clean stop publishes "offline" and saves the cursor; a dead bridge closes our stdin
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    unpacker = msgpack.Unpacker(raw=False)
    fd = stdin.fileno()
    wlock = threading.Lock()

    def send(msg: list[Any]) -> None:
        with wlock:
            try:
                stdout.write(_pack(msg))
                stdout.flush()
            except (BrokenPipeError, OSError, ValueError):
                os._exit(0)   # the bridge is gone

    def recv() -> list[Any] | None:
        while True:
            for msg in unpacker:
                return list(msg)
            data = os.read(fd, 65536)
            if not data:
                return None
            unpacker.feed(data)

    first = recv()
    if not first or first[0] != "cfg":
        return 2
    c = first[1]
    store = Store(c["db"], c["synchronous"])
    pub = Publisher(MqttConfig(**c["mqtt"]), store, client_id=c["client_id"], will_topic=c["will_topic"],
                    subscriptions=list(c["subscriptions"]), on_message=lambda t, p: send(["msg", t, p]),
                    trim=False)   # the bridge trims the published outbox rows (ProcessPublisher.trim)
    pub.start()
    done = threading.Event()

    def status() -> None:
        last: tuple[Any, ...] = ()
        while not done.wait(STATUS_S):
            now = (pub.connected.is_set(), pub.cursor, tuple(sorted(pub.stats.items())))
            if now != last:
                last = now
                send(["st", now[0], now[1], dict(now[2])])
    th = threading.Thread(target=status, name="fl-mqtt-status", daemon=True)
    th.start()
    while True:
        msg = recv()
        if msg is None:          # killed bridge: no DISCONNECT, so the broker publishes the last will
            os._exit(0)
        if msg[0] == "n":
            pub.notify()
        elif msg[0] == "stop":
            break
    pub.stop()
    done.set()
    th.join(1)
    send(["st", False, pub.cursor, dict(pub.stats)])
    store.db.close()   # not Store.close(): the outbox id counter (meta out_seq) is the bridge's to save
    store.rdb.close()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="fieldlink: %(message)s")
    sys.exit(_child(sys.stdin.buffer, sys.stdout.buffer))
