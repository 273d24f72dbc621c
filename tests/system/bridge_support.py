"""Helpers for the bridge tests (no tests here): a real Mosquitto on a free 127.0.0.1 port, an MQTT
subscriber that records everything, and a scripted gateway on a pseudo-terminal that speaks the uplink
protocol (g/s sequence numbers, a ring of unacknowledged messages, resend on ``hello``)."""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import paho.mqtt.client as mqtt
import pytest
from fieldlink.codec.serialframe import FrameDecoder, encode_frame

MOSQUITTO = "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(pred: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Mosquitto:
    """A real broker; ``stop()``/``start()`` keep the port so clients can reconnect."""

    def __init__(self, tmp: Path, port: int | None = None) -> None:
        if not (os.path.exists(MOSQUITTO) or shutil.which("mosquitto")):
            pytest.fail(f"mosquitto is required for the bridge tests ({MOSQUITTO}); apt-get install -y mosquitto")
        self.port = port or free_port()
        self.conf = tmp / "mosquitto.conf"
        self.log = tmp / "mosquitto.log"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                             f"max_queued_messages 1000000\nmax_inflight_messages 0\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        exe = MOSQUITTO if os.path.exists(MOSQUITTO) else str(shutil.which("mosquitto"))
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=log, stderr=log)
        end = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > end:
                    raise AssertionError("mosquitto did not start: " + self.log.read_text()[-2000:]) from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Subscriber:
    """Records (topic, payload, retain) of everything matching ``topics``; reconnects by itself with a
    persistent session (clean_session False) so QoS 1 messages queued while it was away arrive."""

    def __init__(self, port: int, topics: list[str], client_id: str = "test-sub") -> None:
        self.msgs: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.c.on_message = self._on
        self.c.on_connect = lambda c, u, f, rc, p=None: (
            [c.subscribe(t, qos=1) for t in topics], self.connected.set())
        self.c.on_disconnect = lambda *a: self.connected.clear()
        self.c.reconnect_delay_set(1, 2)
        self.c.connect("127.0.0.1", port, 30)
        self.c.loop_start()
        wait_until(self.connected.is_set, 15, "subscriber connection")
        time.sleep(0.2)

    def _on(self, c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.msgs.append((m.topic, bytes(m.payload), bool(m.retain)))

    def json(self, pred: Callable[[str], bool]) -> list[tuple[str, Any]]:
        with self.lock:
            items = list(self.msgs)
        out = []
        for t, p, _ in items:
            if pred(t):
                try:
                    out.append((t, json.loads(p)))
                except ValueError:
                    out.append((t, p.decode(errors="replace")))
        return out

    def publish(self, topic: str, payload: str | bytes) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


class ScriptedGateway:
    """The gateway end of a pty: numbered messages, resend of unacknowledged ones on ``hello``. The
    bridge opens ``path`` (a symlink, so an unplug/replug can swap the pty under it like udev)."""

    def __init__(self, tmp: Path, g: int = 1) -> None:
        self.link = tmp / "ttyGW"
        self.g = g
        self.s = 0
        self.unacked: list[tuple[int, bytes]] = []
        self.acked = 0
        self.host_msgs: list[dict[str, Any]] = []
        self.sent: dict[int, dict[str, Any]] = {}
        #: called with each acknowledged s, in the gateway's reader, at the moment the ack arrives
        self.on_ack: Callable[[int], None] | None = None
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._plug()
        self._thread = threading.Thread(target=self._reader, daemon=True)
        self._thread.start()

    @property
    def path(self) -> str:
        return str(self.link)

    def _plug(self) -> None:
        self.master, slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(slave)
        self.slave_name = os.ttyname(slave)
        self.slave_fd = slave  # keep the slave open so the master never sees a hangup between opens
        self.dec = FrameDecoder(4096)
        tmp = self.link.with_suffix(".new")
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(self.slave_name)
        tmp.replace(self.link)

    def unplug(self) -> None:
        """The USB device disappears: the pty is closed and the symlink removed."""
        with self.lock:
            self.link.unlink()
            for fd in (self.master, self.slave_fd):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.master = -1

    def replug(self) -> None:
        with self.lock:
            self._plug()

    def send(self, msg: dict[str, Any], seq: bool = True) -> None:
        with self.lock:
            if seq:
                self.s += 1
                msg = {**msg, "g": self.g, "s": self.s}
            frame = encode_frame(msgpack.packb(msg, use_bin_type=True))
            if seq:
                self.sent[self.s] = msg
                self.unacked.append((self.s, frame))
            self._write(frame)

    def raw(self, data: bytes) -> None:
        with self.lock:
            self._write(data)

    def _write(self, data: bytes) -> None:
        if self.master < 0:
            return
        view = memoryview(data)
        while view:
            _, ok, _ = select.select([], [self.master], [], 2.0)
            if not ok:
                return  # nobody reads (host away): the message stays in the ring
            try:
                n = os.write(self.master, view)
            except OSError:
                return
            view = view[n:]

    def _reader(self) -> None:
        while not self._stop.is_set():
            fd = self.master
            if fd < 0:
                time.sleep(0.05)
                continue
            try:
                r, _, _ = select.select([fd], [], [], 0.05)
                data = os.read(fd, 65536) if r else b""
            except (OSError, ValueError):
                time.sleep(0.05)
                continue
            for p in self.dec.feed(data):
                try:
                    m = msgpack.unpackb(p, raw=False)
                except Exception:  # noqa: BLE001 - a test gateway ignores garbage like the real one
                    continue
                with self.lock:
                    self.host_msgs.append(m)
                    s = m.get("s") if m.get("t") in ("ack", "hb") else None
                    if isinstance(s, int):
                        if self.on_ack is not None:
                            self.on_ack(s)
                        self.acked = max(self.acked, s)
                        self.unacked = [(k, f) for k, f in self.unacked if k > s]
                    if m.get("t") == "hello":
                        for _, f in self.unacked:
                            self._write(f)
                    if m.get("t") == "cmd":
                        self._on_cmd(m)

    def _on_cmd(self, m: dict[str, Any]) -> None:
        """Answer commands like a gateway would (under self.lock)."""
        reply: dict[str, Any]
        if m.get("op") == "relay" and m.get("to"):
            a = m.get("a") or {}
            reply = {"t": "res", "id": m["id"], "ok": True, "from": m["to"],
                     "r": {"ok": True, "name": a.get("name"), "on": a.get("op") == "on"}}
        elif m.get("to") == "0200000000ee":   # a node that never answers: the bridge times out
            return
        elif m.get("to") == "0200000000ff":   # a sleeping node: queued
            reply = {"t": "cmd_state", "id": m["id"], "state": "queued", "from": m["to"]}
        else:
            reply = {"t": "res", "id": m["id"], "ok": True, "r": {"op": m.get("op")}}
        self.s += 1
        frame = encode_frame(msgpack.packb({**reply, "g": self.g, "s": self.s}, use_bin_type=True))
        self.unacked.append((self.s, frame))
        self._write(frame)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        if self.master >= 0:
            for fd in (self.master, self.slave_fd):
                try:
                    os.close(fd)
                except OSError:
                    pass


def tel(node: str, boot: int, q: int, value: float, age_ms: int = 0, sensor: str = "sht") -> dict[str, Any]:
    return {"t": "tel", "from": node, "rssi": -50,
            "d": {"q": q, "boot": boot, "r": [[sensor, {"temperature": value}, age_ms]]}}
