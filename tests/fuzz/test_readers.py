"""Long-running readers survive any payload (count it, skip it, keep going) and every serial exchange
ends: the uplink client's reader thread, `fieldlink sim`'s message formatter, the air hub's datagram
handler and control channel, `deploy` against ports that stay silent, echo or send garbage, and
`monitor` on a port that vanishes."""

from __future__ import annotations

import hashlib
import json
import os
import random
import select
import socket
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
from fieldlink.codec.serialframe import encode_frame
from fieldlink_host.cli import main
from fieldlink_host.farm import format_message
from fieldlink_host.uplink import UplinkClient

pytestmark = pytest.mark.fuzz


class FakePort:
    def __init__(self) -> None:
        self.rx = bytearray()
        self.lock = threading.Lock()

    def push(self, raw: bytes) -> None:
        with self.lock:
            self.rx += raw

    def read(self, n: int) -> bytes:
        with self.lock:
            data = bytes(self.rx[:n])
            del self.rx[:n]
        if not data:
            time.sleep(0.01)
        return data

    def write(self, data: bytes) -> int:
        return len(data)

    def close(self) -> None:
        pass


def _weird_objects(seed: int, n: int) -> list[Any]:
    r = random.Random(seed)
    atoms: list[Any] = [None, True, 0, -1, 2**63 - 1, -(2**63), 1.5, float("nan"), float("inf"), "", "tel", b"\x00",
                        [], {}, [1, 2], {"t": 5}]

    def obj(depth: int) -> Any:
        k = r.randrange(6 if depth < 4 else 1)
        if k == 0:
            return r.choice(atoms)
        if k in (1, 2):
            return [obj(depth + 1) for _ in range(r.randrange(4))]
        d: dict[Any, Any] = {}
        for _ in range(r.randrange(5)):
            d[r.choice(["t", "g", "s", "d", "from", "rssi", "r", "id", "ok", 1, -1])] = obj(depth + 1)
        return d

    out = [obj(0) for _ in range(n)]
    for t in ("tel", "evt", "nhb", "join", "boot", "log", "res", "hb", "ack"):
        out += [{"t": t, "d": 5}, {"t": t, "d": {"r": 5}}, {"t": t, "d": {"r": [5, [1], [1, 2], ["s", 5]]}},
                {"t": t, "g": [1], "s": 1}, {"t": t, "g": 1, "s": 1.5}, {"t": t, "s": True, "from": [1]},
                {"t": t, "g": {}, "s": 2**70}, {"t": t, "id": [1]}, {"t": t, "from": {"a": 1}}]
    return out


RAW_PAYLOADS = [b"\x81\x90\x00", b"\x81\x80\x00", b"\x82\x91\x01\x00\xa1t\xa3tel", b"\xc1", b"", b"\x91" * 5000,
                b"\xdd\xff\xff\xff\xff", b"\x81\xa1t\xa3tel" + b"\x00" * 10, b"\xc7\x01\x05x"]


def test_uplink_reader_survives_any_payload() -> None:
    port = FakePort()
    client = UplinkClient(port, auto_ack=False).open()  # type: ignore[arg-type]
    try:
        for p in RAW_PAYLOADS:
            port.push(encode_frame(p))
        for o in _weird_objects(3, 300):
            try:
                port.push(encode_frame(msgpack.packb(o, use_bin_type=True)))
            except (TypeError, ValueError, OverflowError):
                pass
        port.push(b"\x00garbage\x00\x00\x01\x02\x00")
        port.push(encode_frame(msgpack.packb({"t": "evt", "g": 9, "s": 1, "from": "aa", "d": {"ev": "alive"}})))
        end = time.monotonic() + 60
        got = None
        while time.monotonic() < end and got is None:
            m = client.recv(0.2)
            if m is not None and m.get("d") == {"ev": "alive"}:
                got = m
        assert got is not None, client.stats
        st = client.stats
        assert st.bad_msgpack >= 3 and st.bad_msg > 0
        assert client._thread is not None and client._thread.is_alive()  # the reader is still running
    finally:
        client.close()


def test_format_message_never_raises() -> None:
    names = {"aa": "node1"}
    lines = 0
    for o in _weird_objects(4, 500):
        line = format_message(o, names)
        assert line is None or isinstance(line, str)
        lines += line is not None
    assert lines > 0
    assert format_message({"t": "tel", "d": 5}, names) is not None  # the datagram: a body that is 5


# ------------------------------------------------------------------------------- air hub

def test_air_hub_survives_datagrams_and_needs_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    from fieldlink_sim.air import Hub

    monkeypatch.setenv("FIELDLINK_AIR_TOKEN", "s3cret")
    hub = Hub(seed=1)
    try:
        r = random.Random(9)
        sender = ("127.0.0.1", 9)
        for _ in range(400):
            kind = r.choice([b"T", b"R", b"U", b"{", b"X", b""])
            data = kind + bytes(r.randrange(256) for _ in range(r.randrange(40)))
            try:
                hub.handle(data, sender)
            except Exception as exc:  # the serve loop counts these; the handler itself should not raise
                pytest.fail(f"hub.handle raised {exc!r} for {data!r}")
        replies: list[bytes] = []
        hub.send = lambda addr, data: replies.append(data)  # type: ignore[method-assign]
        for msg in ({"op": "stop"}, {"op": "link", "loss": 1.0}, {"op": "stop", "token": "guess"},
                    {"op": "seed", "seed": 2, "token": 5}):
            hub.handle(json.dumps(msg).encode(), sender)
            assert json.loads(replies[-1])["ok"] is False
            assert hub.running
        hub.handle(json.dumps({"op": "ping"}).encode(), sender)
        assert json.loads(replies[-1])["ok"] is True
        hub.handle(json.dumps({"op": "link", "loss": 0.5, "token": "s3cret"}).encode(), sender)
        assert json.loads(replies[-1])["ok"] is True
        hub.handle(json.dumps({"op": "stop", "token": "s3cret"}).encode(), sender)
        assert not hub.running
    finally:
        hub.sock.close()


# ------------------------------------------------------------------------------- serial exchanges

class FakeTty:
    """A pseudo-terminal whose far end is silent, echoes, or streams garbage."""

    def __init__(self, mode: str) -> None:
        self.master, self.slave = os.openpty()
        import tty

        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.mode = mode
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        r = random.Random(1)
        while not self.stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.02)
            try:
                data = os.read(self.master, 4096) if ready else b""
                if self.mode == "vanish" and data:  # the board is unplugged as soon as the host talks
                    os.close(self.master)
                    return
                if self.mode == "echo" and data:
                    os.write(self.master, data)
                elif self.mode == "garbage":
                    os.write(self.master, bytes(r.randrange(256) for _ in range(64)))
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def _bundle(root: Path) -> Path:
    root.mkdir()
    data = b"x = 1\n"
    (root / "main.py").write_bytes(data)
    (root / "manifest.json").write_text(json.dumps({
        "format": "fieldlink-bundle/1", "board": "sim-node", "chip": "esp32s3", "arch": "xtensawin",
        "version": "1", "source_revision": "x", "mpy_cross": "x", "opt_level": 0, "total_size": len(data),
        "files": [{"path": "main.py", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]}))
    return root


@pytest.mark.parametrize("via", ["mpremote", "ampy"])
@pytest.mark.parametrize("mode", ["silent", "echo", "garbage", "vanish"])
def test_deploy_to_a_port_that_is_not_a_board_ends(mode: str, via: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    tty_ = FakeTty(mode)
    try:
        rc = main(["deploy", "--port", tty_.path, "--bundle", str(_bundle(tmp_path / "b")), "--via", via,
                   "--timeout", "1.5"])
    finally:
        tty_.close()
    err = capsys.readouterr().err
    assert rc == 1
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fieldlink: error: ") and "Traceback" not in err, err
    assert any(s in err for s in ("raw REPL", "no valid answer", "ampy cannot use", "went away")), err


def test_monitor_port_vanishing_is_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    os.write(master, b"hello\r\n")

    def hang_up() -> None:
        time.sleep(0.5)
        os.close(master)

    threading.Thread(target=hang_up, daemon=True).start()
    rc = main(["monitor", "--port", path, "--seconds", "60"])
    err = capsys.readouterr().err
    assert rc == 1 and len(err.splitlines()) == 1 and "went away" in err, err


def test_air_hub_process_refuses_foreign_control() -> None:
    from fieldlink_host.virtual import start_air

    hub = start_air(seed=1)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(b'{"op": "stop"}', (hub.host, hub.port))
            reply = json.loads(s.recvfrom(2048)[0])
        assert reply["ok"] is False and "token" in reply["error"]
        assert hub.proc.poll() is None
        assert hub.stats()["ok"] is True  # the launcher (AirHub) still controls it
    finally:
        hub.stop()
    assert hub.proc.poll() is not None
