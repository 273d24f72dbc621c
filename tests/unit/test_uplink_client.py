"""The host side of the uplink (fieldlink_host.uplink.UplinkClient) against a scripted gateway byte stream:
frames built with the PyPI msgpack library and the device framing, fed through a fake serial port."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import msgpack
import pytest
from fieldlink.codec.serialframe import FrameDecoder, encode_frame
from fieldlink_host import uplink
from fieldlink_host.uplink import FastFrameDecoder, UplinkClient, UplinkError, all_peers


class FakePort:
    """The two pyserial methods the client uses, plus close; records what the host writes."""

    def __init__(self) -> None:
        self.rx = bytearray()
        self.tx = bytearray()
        self.lock = threading.Lock()

    def feed(self, msg: dict[str, Any]) -> None:
        with self.lock:
            self.rx += encode_frame(msgpack.packb(msg, use_bin_type=True))

    def read(self, n: int) -> bytes:
        with self.lock:
            data = bytes(self.rx[:n])
            del self.rx[:n]
        if not data:
            time.sleep(0.01)
        return data

    def write(self, data: bytes) -> int:
        self.tx += data
        return len(data)

    def close(self) -> None:
        pass

    def sent(self) -> list[dict[str, Any]]:
        dec = FrameDecoder(4096)
        return [msgpack.unpackb(p, raw=False) for p in dec.feed(bytes(self.tx))]


def tel(g: int, s: int, node: str, boot: int, q: int) -> dict[str, Any]:
    return {"t": "tel", "g": g, "s": s, "from": node, "rssi": -50,
            "d": {"q": q, "boot": boot, "r": [["sht", {"temperature": 20.0 + q}, 0]]}}


def drain(client: UplinkClient, timeout: float = 1.0) -> list[dict[str, Any]]:
    out = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        m = client.recv(0.05)
        if m is not None:
            out.append(m)
    return out


def test_repeated_node_telemetry_after_a_gateway_reboot_is_delivered_once() -> None:
    port = FakePort()
    client = UplinkClient(port, hb_interval=10).open()  # type: ignore[arg-type]
    try:
        port.feed({"t": "boot", "g": 1, "s": 1, "fw": "0.1.0", "name": "gw", "boot": 1})
        port.feed(tel(1, 2, "020000000001", 4, 1))
        port.feed(tel(1, 3, "020000000001", 4, 2))
        # the gateway reboots (g 2) and forwards q 2 again: the node repeated it because its ACK was lost
        port.feed({"t": "boot", "g": 2, "s": 1, "fw": "0.1.0", "name": "gw", "boot": 2})
        port.feed(tel(2, 2, "020000000001", 4, 2))
        port.feed(tel(2, 3, "020000000001", 4, 3))
        # another node with the same q is not a duplicate; the same node after its own reboot neither
        port.feed(tel(2, 4, "020000000002", 9, 2))
        port.feed(tel(2, 5, "020000000001", 5, 1))
        got = [m for m in drain(client) if m["t"] == "tel"]
        assert [(m["from"][-1], m["d"]["boot"], m["d"]["q"]) for m in got] == [
            ("1", 4, 1), ("1", 4, 2), ("1", 4, 3), ("2", 9, 2), ("1", 5, 1)]
        assert client.stats.tel_duplicates == 1
        # the duplicate was still acknowledged on the uplink, so the gateway does not resend it forever
        acks = [m.get("s") for m in port.sent() if m.get("t") in ("ack", "hb")]
        assert 5 in acks, port.sent()
    finally:
        client.close()


def test_uplink_retransmissions_are_dropped_by_gateway_sequence() -> None:
    port = FakePort()
    client = UplinkClient(port, hb_interval=10).open()  # type: ignore[arg-type]
    try:
        port.feed({"t": "boot", "g": 7, "s": 1, "fw": "0.1.0", "name": "gw", "boot": 7})
        port.feed(tel(7, 2, "020000000001", 1, 1))
        port.feed(tel(7, 2, "020000000001", 1, 1))   # go-back-N resend of the same uplink frame
        port.feed(tel(7, 4, "020000000001", 1, 3))   # s 3 was dropped by the gateway's ring
        got = [m for m in drain(client) if m["t"] == "tel"]
        assert [m["d"]["q"] for m in got] == [1, 3]
        assert client.stats.duplicates == 1 and client.stats.gaps == 1
        assert client.stats.tel_duplicates == 0
    finally:
        client.close()


def test_missing_port_is_one_clear_error(tmp_path: Any) -> None:
    missing = str(tmp_path / "ttyACM9")
    try:
        UplinkClient(missing).open()
    except UplinkError as exc:
        assert missing in str(exc) and "cannot open" in str(exc)
    else:
        raise AssertionError("opening a missing port must fail")


class VanishingPort(FakePort):
    """Works, then fails every read and write like a USB port that was unplugged."""

    def __init__(self) -> None:
        super().__init__()
        self.gone = False

    def read(self, n: int) -> bytes:
        if self.gone:
            raise OSError(5, "Input/output error")
        return super().read(n)

    def write(self, data: bytes) -> int:
        if self.gone:
            raise OSError(5, "Input/output error")
        return super().write(data)


def test_vanished_port_gives_uplink_errors_and_the_client_keeps_running() -> None:
    port = VanishingPort()
    client = UplinkClient(port, hb_interval=0.05).open()  # type: ignore[arg-type]
    try:
        port.feed(tel(1, 1, "020000000001", 1, 1))
        assert [m["d"]["q"] for m in drain(client, 0.5) if m["t"] == "tel"] == [1]
        port.gone = True
        time.sleep(0.3)                       # the reader and the heartbeat hit the errors meanwhile
        try:
            client.request("ping", timeout=0.5)
        except UplinkError:
            pass                              # OSError while sending, or no answer: one clear error
        else:
            raise AssertionError("a request over a vanished port must fail")
        # the port comes back (re-enumerated): the same client receives again, nothing was lost on our side
        port.gone = False
        port.feed(tel(1, 2, "020000000001", 1, 2))
        assert [m["d"]["q"] for m in drain(client, 0.5) if m["t"] == "tel"] == [2]
    finally:
        client.close()


def test_a_hole_holds_the_ack_until_the_resend_fills_it() -> None:
    """Stale bytes (s 5, 6) arrive before the gateway's resend of 3, 4 (a host restart): nothing beyond 2
    is acknowledged until 3 and 4 arrived, and they are delivered, not dropped as repeats."""
    port = FakePort()
    client = UplinkClient(port, hb_interval=10)
    client.resume(1, 2)
    client.open()  # type: ignore[arg-type]
    try:
        port.feed(tel(1, 5, "020000000001", 1, 5))
        port.feed(tel(1, 6, "020000000001", 1, 6))
        first = [m["d"]["q"] for m in drain(client, 0.5) if m["t"] == "tel"]
        acks = [m.get("s") for m in port.sent() if m.get("t") == "ack"]
        assert first == [5, 6] and all(a <= 2 for a in acks), acks
        port.feed(tel(1, 2, "020000000001", 1, 2))   # stored before the restart: a repeat
        port.feed(tel(1, 3, "020000000001", 1, 3))
        port.feed(tel(1, 4, "020000000001", 1, 4))
        assert [m["d"]["q"] for m in drain(client, 0.5) if m["t"] == "tel"] == [3, 4]
        assert max(m.get("s") for m in port.sent() if m.get("t") == "ack") == 6
        assert client.stats.gaps == 0 and client.stats.duplicates == 1
    finally:
        client.close()


def test_a_hole_nobody_fills_is_given_up_as_ring_drops() -> None:
    port = FakePort()
    client = UplinkClient(port, hb_interval=10).open()  # type: ignore[arg-type]
    try:
        port.feed(tel(1, 1, "020000000001", 1, 1))
        port.feed(tel(1, 4, "020000000001", 1, 4))    # 2 and 3 were dropped by the gateway's ring
        end = time.monotonic() + 10
        while time.monotonic() < end and 4 not in [m.get("s") for m in port.sent() if m.get("t") == "ack"]:
            time.sleep(0.1)
        assert 4 in [m.get("s") for m in port.sent() if m.get("t") == "ack"]
        assert client.stats.gaps == 2
    finally:
        client.close()


def _noisy_stream(rng: random.Random, max_frame: int) -> bytes:
    """Valid frames mixed with every kind of bad input the decoder distinguishes."""
    out = bytearray()
    for _ in range(rng.randrange(1, 12)):
        kind = rng.randrange(8)
        payload = bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 2, 5, 40, 300, max_frame, max_frame + 1))))
        frame = bytearray(encode_frame(payload))
        if kind == 1 and len(frame) > 3:                         # a flipped bit: CRC error (or worse)
            i = rng.randrange(len(frame) - 1)
            frame[i] = (frame[i] ^ (1 << rng.randrange(8))) or 1
        elif kind == 2:                                           # line noise (zeros included)
            frame = bytearray(rng.randrange(256) for _ in range(rng.randrange(1, 30)))
        elif kind == 3:                                           # far too long: dropped up to its 0x00
            frame = bytearray(rng.randrange(1, 256) for _ in range(rng.choice((2000, 5000)))) + b"\x00"
        elif kind == 4:                                           # a truncated COBS block
            frame = bytearray([rng.randrange(5, 255), 1, 2, 0])
        elif kind == 5:                                           # empty frames
            frame = bytearray(b"\x00" * rng.randrange(1, 3))
        out += frame
    return bytes(out)


def test_fast_frame_decoder_matches_the_device_decoder() -> None:
    """The host's C-backed decoder gives the device FrameDecoder's payloads and counters (docs/protocol.md
    "Receiving and resynchronisation") on random streams of good and bad frames cut at random points."""
    rng = random.Random(1405)
    totals = {"frames": 0, "crc_errors": 0, "framing_errors": 0, "oversize": 0}
    for _ in range(300):
        max_frame = rng.choice((64, 1024))
        stream = _noisy_stream(rng, max_frame)
        ref, fast = FrameDecoder(max_frame), FastFrameDecoder(max_frame)
        pos = 0
        while pos < len(stream):
            n = rng.choice((1, 2, 7, 64, 1000, 5000))
            chunk = stream[pos:pos + n]
            pos += n
            assert fast.feed(chunk) == ref.feed(chunk)
            assert fast.stats() == ref.stats()
        for k in totals:
            totals[k] += ref.stats()[k]
    assert all(totals.values()), totals   # every outcome was exercised


class PtyLikePort(FakePort):
    """Hands out at most 4095 bytes per read (a pty's line buffer) and says how many are waiting."""

    @property
    def in_waiting(self) -> int:
        with self.lock:
            return len(self.rx)

    def read(self, n: int) -> bytes:
        return super().read(min(n, 4095))


def test_everything_waiting_is_one_group_one_sink_call_one_ack(monkeypatch: pytest.MonkeyPatch) -> None:
    """Group commit: the reader keeps reading while the port holds more, hands the whole group to the
    sink at once (the bridge commits it in one transaction) and then acknowledges it with one ack."""
    monkeypatch.setattr(uplink, "GROUP_S", 60.0)   # a slow machine must not split the group by time
    port = PtyLikePort()
    for q in range(1, 301):
        port.feed(tel(1, q, "020000000001", 1, q))
    assert len(port.rx) > 3 * 4095          # more than one read's worth
    calls: list[int] = []
    client = UplinkClient(port, hb_interval=10, on_messages=lambda msgs: calls.append(len(msgs)))  # type: ignore[arg-type]
    client.open()
    try:
        end = time.monotonic() + 10
        while time.monotonic() < end and sum(calls) < 300:
            time.sleep(0.02)
        time.sleep(0.1)
        assert calls == [300]
        assert [m["s"] for m in port.sent() if m.get("t") == "ack"] == [300]
    finally:
        client.close()


class _PagingGateway:
    """answers ``peers`` a page of 8 at a time with ``more`` (docs/protocol.md), like the device does"""

    def __init__(self, n: int, more_bug: bool = False) -> None:
        self.peers = [{"mac": f"0200000001{i:02x}"} for i in range(n)]
        self.more_bug = more_bug
        self.calls: list[int] = []

    def request(self, op: str, /, to: str | None = None, timeout: float = 10.0, ttl: int | None = None,
                check: bool = True, **args: Any) -> dict[str, Any]:
        assert op == "peers"
        off = int(args.get("o", 0))
        self.calls.append(off)
        res: dict[str, Any] = {"t": "res", "ok": True, "r": self.peers[off:off + 8]}
        if off + 8 < len(self.peers):
            res["more"] = 0 if self.more_bug else off + 8
        return res


def test_all_peers_walks_the_gateways_pages() -> None:
    gw = _PagingGateway(30)
    assert [p["mac"] for p in all_peers(gw)] == [p["mac"] for p in gw.peers]
    assert gw.calls == [0, 8, 16, 24]
    # an older gateway answers everything at once; a broken one pointing back never loops forever
    assert len(all_peers(_PagingGateway(5))) == 5
    bad = _PagingGateway(30, more_bug=True)
    assert len(all_peers(bad)) == 8 and bad.calls == [0]
