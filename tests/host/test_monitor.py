"""monitor: frames interleaved with console text are split correctly; frames are checked against frames
built independently with the PyPI msgpack and cobs packages and a bit-wise CRC-16/CCITT-FALSE."""

from __future__ import annotations

import io
import json
import os
import pty
import threading
import tty

import msgpack
from cobs import cobs
from fieldlink_host.monitor import MonitorDecoder, format_event, monitor


def crc16_ccitt_false(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def frame(obj: object) -> bytes:
    payload = msgpack.packb(obj)
    return cobs.encode(payload + crc16_ccitt_false(payload).to_bytes(2, "big")) + b"\x00"


def test_crc_reference() -> None:
    assert crc16_ccitt_false(b"123456789") == 0x29B1  # catalogue check value


def _run(chunks: list[bytes]) -> list[tuple[str, object]]:
    d = MonitorDecoder()
    out: list[tuple[str, object]] = []
    for c in chunks:
        out += d.feed(c)
    out += d.flush()
    return out


def test_text_and_frames_interleaved() -> None:
    t1 = {"t": "telemetry", "node": 7, "v": [21.5, 40], "ok": True}
    t2 = {"t": "ack", "seq": 65535, "raw": b"\x00\x01\n"}
    stream = b"MPY: soft reboot\r\nfieldlink gateway up\r\n" + frame(t1) + b"log: x=1\r\n" + frame(t2) + frame([1, 2])
    expect_text = "MPY: soft reboot\r\nfieldlink gateway up\r\nlog: x=1\r\n"
    for split in (1, 3, 7, len(stream)):
        chunks = [stream[i:i + split] for i in range(0, len(stream), split)]
        ev = _run(chunks)
        frames = [v for k, v in ev if k == "frame"]
        text = "".join(str(v) for k, v in ev if k == "text")
        assert frames == [t1, t2, [1, 2]]
        assert text == expect_text


def test_frame_right_after_text_without_newline() -> None:
    ev = _run([b"partial line ", frame({"a": 1}), b"next\n"])
    assert ev == [("text", "partial line "), ("frame", {"a": 1}), ("text", "next\n")]


def test_corrupted_frame_is_not_a_frame() -> None:
    f = bytearray(frame({"x": 1}))
    f[3] ^= 0x40
    ev = _run([b"hello\n", bytes(f), frame({"y": 2})])
    assert [v for k, v in ev if k == "frame"] == [{"y": 2}]


def test_json_lines() -> None:
    line = format_event(("frame", {"raw": b"\x00\xff", "n": 1}))
    assert json.loads(line) == {"frame": {"n": 1, "raw": {"$bytes": "AP8="}}}


def test_monitor_on_a_pty() -> None:
    master, slave = pty.openpty()
    tty.setraw(slave)
    port = os.ttyname(slave)
    out = io.StringIO()

    def writer() -> None:
        os.write(master, b"boot text\r\n" + frame({"t": "hb", "up": 5}) + b"more\r\n")

    threading.Timer(0.3, writer).start()
    n = monitor(port, seconds=1.2, out=out)
    os.close(master)
    os.close(slave)
    assert n == 1
    lines = out.getvalue().splitlines()
    assert lines[0] == "boot text" and json.loads(lines[1]) == {"frame": {"t": "hb", "up": 5}} and lines[2] == "more"
