"""Serial console that shows fieldlink frames as JSON lines and everything else as console text.

The gateway's uplink carries COBS frames (docs/protocol.md: ``COBS(payload || CRC16) || 0x00``, payload
msgpack) on the same serial line as MicroPython's console output. Text never contains 0x00, so the
stream is cut at each 0x00; the longest tail of a chunk that decodes as a valid frame (COBS + CRC16,
via ``fieldlink.codec.serialframe.FrameDecoder``, then ``fieldlink.codec.mpack.unpackb``) is a frame and the rest is text. Text not followed by a 0x00 is shown once it ends with a newline and is printable, or
after a short idle time.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from fieldlink_host.errors import FieldlinkError

Event = tuple[str, Any]  # ("text", str) | ("frame", obj) | ("bad", bytes)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, bytes | bytearray | memoryview):
        b = bytes(obj)
        try:
            return b.decode("utf-8") if b.isascii() and b.decode().isprintable() else {"$bytes": base64.b64encode(b).decode()}
        except UnicodeDecodeError:
            return {"$bytes": base64.b64encode(b).decode()}
    if isinstance(obj, dict):
        return {str(_jsonable(k)) if not isinstance(k, str) else k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, int | float | str | bool) or obj is None:
        return obj
    return repr(obj)


def _printable(b: bytes) -> bool:
    try:
        s = b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t\x1b" for c in s)


class MonitorDecoder:
    def __init__(self, max_frame: int = 1024) -> None:
        from fieldlink.codec.mpack import unpackb
        from fieldlink.codec.serialframe import FrameDecoder

        self._FrameDecoder = FrameDecoder
        self._unpackb = unpackb
        self.max_frame = max_frame
        self._pending = b""
        self.frames = 0
        self.bad = 0

    def _frame(self, body: bytes) -> bytes | None:
        if not body:
            return None
        got = self._FrameDecoder(max_frame=self.max_frame).feed(body + b"\x00")
        return bytes(got[0]) if got else None

    def _split(self, chunk: bytes) -> list[Event]:
        # longest tail first; a tail longer than the biggest possible frame body cannot be a frame
        limit = len(chunk) - (2 * self.max_frame + 8)
        for s in range(max(0, limit), len(chunk)):
            payload = self._frame(chunk[s:])
            if payload is not None:
                events: list[Event] = []
                if s:
                    events.append(("text", chunk[:s].decode("utf-8", "replace")))
                try:
                    events.append(("frame", self._unpackb(payload)))
                    self.frames += 1
                except Exception:
                    events.append(("bad", payload))
                    self.bad += 1
                return events
        return [("text", chunk.decode("utf-8", "replace"))] if chunk else []

    def feed(self, data: bytes) -> list[Event]:
        buf = self._pending + data
        events: list[Event] = []
        while True:
            z = buf.find(b"\x00")
            if z < 0:
                break
            events += self._split(buf[:z])
            buf = buf[z + 1:]
        # text without a 0x00 behind it: release complete printable lines now
        nl = buf.rfind(b"\n")
        if nl >= 0 and _printable(buf[:nl + 1]):
            events.append(("text", buf[:nl + 1].decode("utf-8", "replace")))
            buf = buf[nl + 1:]
        self._pending = buf
        return events

    def flush(self) -> list[Event]:
        """Idle: whatever is pending is console text (a frame would have ended with 0x00)."""
        buf, self._pending = self._pending, b""
        if buf and len(buf) <= 2 * self.max_frame and not _printable(buf):
            self._pending = buf  # maybe a frame still arriving
            return []
        return [("text", buf.decode("utf-8", "replace"))] if buf else []


def format_event(ev: Event) -> str:
    kind, value = ev
    if kind == "frame":
        return json.dumps({"frame": _jsonable(value)}, sort_keys=True, separators=(",", ":")) + "\n"
    if kind == "bad":
        return json.dumps({"bad_frame": base64.b64encode(value).decode()}) + "\n"
    return str(value)


def monitor(port: str, *, baud: int = 115200, out: TextIO | None = None, seconds: float | None = None,
            raw_frames_only: bool = False, opener: Callable[..., Any] | None = None) -> int:
    """Print the console of ``port`` until Ctrl-C (or ``seconds``); returns the number of frames seen."""
    import serial

    if seconds is not None and not (seconds == seconds and 0 < seconds < float("inf")):
        raise FieldlinkError(f"--seconds must be a positive number, got {seconds}")
    stream = out or sys.stdout
    try:
        ser = (opener or serial.Serial)(port, baud, timeout=0.1)
    except (serial.SerialException, OSError) as exc:
        raise FieldlinkError(f"cannot open {port}: {exc}") from exc
    dec = MonitorDecoder()
    end = time.monotonic() + seconds if seconds is not None else None
    idle_since = time.monotonic()
    try:
        while end is None or time.monotonic() < end:
            data = ser.read(4096)
            events = dec.feed(data) if data else []
            if data:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > 0.2:
                events = dec.flush()
            for ev in events:
                if raw_frames_only and ev[0] == "text":
                    continue
                stream.write(format_event(ev))
            if events:
                stream.flush()
    except KeyboardInterrupt:
        pass
    except (serial.SerialException, OSError) as exc:  # unplugged, the virtual board stopped
        raise FieldlinkError(f"the serial port went away after {dec.frames} frames ({exc})", where=port) from None
    finally:
        try:
            ser.close()
        except (serial.SerialException, OSError):
            pass
    return dec.frames
