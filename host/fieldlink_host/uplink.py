"""Host side of the gateway serial uplink (docs/protocol.md "Uplink messages (gateway <-> host)").

Frames are ``COBS(msgpack(map) || CRC16) || 0x00`` at 921600 baud. :class:`UplinkClient` opens the port
with pyserial, runs one reader thread that decodes frames, acknowledges every sequenced gateway message
(cumulative ``{"t": "ack", "s": N}``), drops duplicates (the gateway resends after a reconnect), counts
gaps (messages the gateway's ring buffer dropped while the host was away), sends heartbeats while idle,
and correlates command results (``res`` by ``id``). It is the transport the MQTT bridge builds on.

Example::

    with UplinkClient("/dev/ttyACM0") as gw:
        print(gw.ping())
        gw.pair_begin(60)
        res = gw.node_command("aabbccddeeff", "relay", name="fan", op="on")
        for msg in gw.messages(timeout=5):
            print(msg)
"""

from __future__ import annotations

import binascii
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgpack
import serial
from cobs import cobs
from fieldlink.codec.serialframe import encode_frame, max_body_len

from fieldlink_host.errors import FieldlinkError

DEFAULT_BAUD = 921600
MAX_FRAME = 4096
#: telemetry sequence numbers remembered per node to drop repeats (the gateway keeps 8; the host more)
TEL_SEEN = 64
#: seconds a hole in the uplink sequence may stay open before it is taken as messages the gateway's
#: ring dropped (the gateway resends unacknowledged messages after 1 s without progress)
HOLE_WAIT = 2.5
#: bytes per read; a commit group (one sink call, one ack) ends when the port is empty, after GROUP_MAX
#: messages or GROUP_S seconds
READ_MAX = 65536
GROUP_MAX = 4096
GROUP_S = 0.05


class FastFrameDecoder:
    """The host's serial frame decoder: the same rules, results and counters as the device's
    ``fieldlink.codec.serialframe.FrameDecoder`` (docs/protocol.md "Receiving and resynchronisation",
    cross-checked in tests/unit/test_uplink_client.py), with the per-byte work done in C: ``bytes.split``
    at 0x00, the PyPI ``cobs`` decoder and ``binascii.crc_hqx`` (CRC-16 with polynomial 0x1021; from
    0xFFFF it is CRC-16/CCITT-FALSE, and the CRC over payload + its big-endian CRC is 0)."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._cap = max_body_len(max_frame)
        self._part = b""          # bytes of the frame not finished yet
        self._skip = False        # inside an oversize frame: drop up to the next 0x00
        self.frames = 0
        self.crc_errors = 0
        self.framing_errors = 0
        self.oversize = 0
        self.bytes_in = 0

    def stats(self) -> dict[str, int]:
        return {"frames": self.frames, "crc_errors": self.crc_errors, "framing_errors": self.framing_errors,
                "oversize": self.oversize, "bytes_in": self.bytes_in}

    def feed(self, data: bytes) -> list[bytes]:
        self.bytes_in += len(data)
        parts = bytes(data).split(b"\x00")
        tail = parts.pop()                     # after the last 0x00: the next, unfinished frame
        out: list[bytes] = []
        cap = self._cap
        if parts:
            first = parts[0]
            if self._skip:
                self._skip = False
                parts[0] = b""                 # the end of an oversize frame, already counted
            elif self._part:
                parts[0] = self._part + first
            self._part = b""
            for body in parts:
                if not body:
                    continue
                if len(body) > cap:
                    self.oversize += 1
                    continue
                try:
                    dec = cobs.decode(body)
                except cobs.DecodeError:
                    self.framing_errors += 1
                    continue
                if len(dec) < 2:
                    self.framing_errors += 1
                elif binascii.crc_hqx(dec, 0xFFFF):
                    self.crc_errors += 1
                elif len(dec) - 2 > self.max_frame:
                    self.oversize += 1
                else:
                    self.frames += 1
                    out.append(dec[:-2])
        if tail and not self._skip:
            if len(self._part) + len(tail) > cap:
                self.oversize += 1
                self._skip = True
                self._part = b""
            else:
                self._part += tail
        return out


class UplinkError(FieldlinkError):
    """The gateway could not be reached or did not answer in time."""


class CommandFailed(FieldlinkError):
    """A command was answered with ``ok: false``; ``.result`` holds the whole ``res`` message."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class UplinkStats:
    frames: int = 0
    messages: int = 0
    duplicates: int = 0
    gaps: int = 0
    bad_msgpack: int = 0
    bad_msg: int = 0
    acks_sent: int = 0
    last_ack: int = 0       # the last cumulative ack sent: everything up to it was delivered first
    frames_sent: int = 0
    gateway_boots: int = 0
    tel_duplicates: int = 0
    io_errors: int = 0
    sink_errors: int = 0
    decoder: dict[str, int] = field(default_factory=dict)
    #: payloads whose handling raised (any exception): counted, skipped, the last one kept for reports
    reader_errors: int = 0
    last_reader_error: str = ""


def encode_message(msg: dict[str, Any]) -> bytes:
    """One host -> gateway frame."""
    return encode_frame(msgpack.packb(msg, use_bin_type=True))


def decode_payload(payload: bytes) -> dict[str, Any] | None:
    """msgpack map with a str "t", or None (the caller counts it)."""
    obj = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    if not isinstance(obj, dict) or not isinstance(obj.get("t"), str):
        return None
    return obj


class UplinkClient:
    """A serial connection to one gateway. Thread-safe for callers; one internal reader thread."""

    def __init__(self, port: str | serial.SerialBase, baud: int = DEFAULT_BAUD, hb_interval: float = 1.0,
                 auto_ack: bool = True, max_queue: int = 100_000,
                 on_messages: Callable[[list[dict[str, Any]]], None] | None = None,
                 dedup_telemetry: bool = True) -> None:
        """``dedup_telemetry``: drop node telemetry repeats by ``(from, boot, q)`` here (a caller with a
        durable dedup of its own, the bridge's store, passes False).

        ``on_messages``: called in the reader thread with the new (deduplicated) messages of each chunk
        read from the port, *before* they are acknowledged; the acknowledgement is sent only after it
        returns, so a caller that stores them first (the bridge) never has a message acknowledged that it
        did not keep. If it raises, nothing of that chunk is acknowledged and the gateway resends it.
        With it set, messages are not queued for :meth:`recv` (command results still reach
        :meth:`request`)."""
        self._port_name = port if isinstance(port, str) else None
        self._ser: serial.SerialBase | None = None if isinstance(port, str) else port
        self.baud = baud
        self.hb_interval = hb_interval
        self.auto_ack = auto_ack
        self.dedup_telemetry = dedup_telemetry
        self.stats = UplinkStats()
        self._dec = FastFrameDecoder(MAX_FRAME)
        self._q: queue.Queue[dict[str, Any]] = queue.Queue(max_queue)
        self._wlock = threading.Lock()
        self._plock = threading.Lock()
        self._pending: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        # per gateway boot g: everything <= _contig[g] arrived (or was given up as dropped by the ring);
        # _above[g] holds the sequence numbers that arrived beyond a hole. Only _contig is acknowledged,
        # so a message is never acknowledged while an older one is missing (stale bytes in the port
        # buffer after a host restart arrive before the gateway's resend of older messages).
        self._contig: dict[Any, int] = {}
        self._above: dict[Any, set[int]] = {}
        self._hole_since: float | None = None
        self._gw_boot: Any = None
        self._tel_seen: dict[str, tuple[Any, list[int]]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_tx = 0.0
        self.on_messages = on_messages
        #: consecutive failed reads (a vanished port); reset by a good read
        self.read_failures = 0

    # ------------------------------------------------------------------ lifecycle
    def resume(self, g: Any, contig: int, above: set[int] | None = None) -> None:
        """Continue a previous session's sequence state (call before :meth:`open`): for gateway boot
        ``g`` everything up to ``contig`` and the numbers in ``above`` are already stored."""
        self._gw_boot = g
        self._contig[g] = contig
        self._above[g] = set(above or ())

    def open(self) -> UplinkClient:
        if self._ser is None:
            assert self._port_name is not None
            try:
                self._ser = serial.Serial(self._port_name, self.baud, timeout=0.05)
            except (serial.SerialException, OSError) as exc:
                raise UplinkError(f"cannot open {self._port_name}: {exc}") from exc
        self._stop.clear()
        self._thread = threading.Thread(target=self._reader, name="fl-uplink", daemon=True)
        self._thread.start()
        self.send({"t": "hello"})
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None
        if self._ser is not None and self._port_name is not None:
            self._ser.close()
            self._ser = None

    def __enter__(self) -> UplinkClient:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sending
    def write_raw(self, data: bytes) -> None:
        """Write bytes as they are (tests inject garbage with this)."""
        if self._ser is None:
            raise UplinkError("uplink is not open")
        with self._wlock:
            try:
                self._ser.write(data)
            except (serial.SerialException, OSError) as exc:
                raise UplinkError(f"cannot write to {self._port_name or 'the gateway port'}: {exc}") from exc
            self._last_tx = time.monotonic()

    def send(self, msg: dict[str, Any]) -> None:
        self.write_raw(encode_message(msg))
        self.stats.frames_sent += 1

    def new_id(self) -> int:
        return next(self._ids) % 0xFFFF + 1

    def request(self, op: str, /, to: str | None = None, timeout: float = 10.0, ttl: int | None = None,
                check: bool = True, **args: Any) -> dict[str, Any]:
        """Send a command and wait for its ``res`` message; raise CommandFailed when ``ok`` is false
        (unless check=False) and UplinkError on timeout."""
        cid = self.new_id()
        waiter: queue.Queue[dict[str, Any]] = queue.Queue()
        with self._plock:
            self._pending[cid] = waiter
        msg: dict[str, Any] = {"t": "cmd", "id": cid, "op": op, "a": args}
        if to is not None:
            msg["to"] = to.replace(":", "").lower()
        if ttl is not None:
            msg["ttl"] = ttl
        try:
            self.send(msg)
            try:
                res = waiter.get(timeout=timeout)
            except queue.Empty:
                raise UplinkError(f"no answer to {op!r} (id {cid}) within {timeout} s") from None
        finally:
            with self._plock:
                self._pending.pop(cid, None)
        if check and not res.get("ok"):
            raise CommandFailed(f"{op} failed: {res.get('err')}", res)
        return res

    # gateway commands
    def ping(self, timeout: float = 5.0) -> dict[str, Any]:
        return dict(self.request("ping", timeout=timeout, n=1)["r"])

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        return dict(self.request("status", timeout=timeout)["r"])

    def peers(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        return all_peers(self, timeout)

    def time_sync(self, epoch_ms: int | None = None, timeout: float = 5.0) -> dict[str, Any]:
        ts = int(time.time() * 1000) if epoch_ms is None else epoch_ms
        return dict(self.request("time_sync", timeout=timeout, ts=ts)["r"])

    def pair_begin(self, seconds: int = 60, timeout: float = 5.0) -> dict[str, Any]:
        return dict(self.request("pair_begin", timeout=timeout, s=seconds)["r"])

    def pair_end(self, timeout: float = 5.0) -> dict[str, Any]:
        return dict(self.request("pair_end", timeout=timeout)["r"])

    def node_command(self, mac: str, command: str, /, timeout: float = 15.0, ttl: int | None = None,
                     check: bool = True, **args: Any) -> dict[str, Any]:
        """Run a node command through the gateway; returns the node's result map (``r``).
        Command arguments are keywords (``op`` included: ``node_command(mac, "relay", name="fan", op="on")``)."""
        res = self.request(command, to=mac, timeout=timeout, ttl=ttl, check=check, **args)
        r = res.get("r")
        return dict(r) if isinstance(r, dict) else {"ok": bool(res.get("ok")), "err": res.get("err")}

    # ------------------------------------------------------------------ receiving
    def recv(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Next gateway message (deduplicated, in order), or None after timeout."""
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None

    def messages(self, timeout: float = 1.0) -> Iterator[dict[str, Any]]:
        """Messages until none arrives for `timeout` seconds."""
        while True:
            m = self.recv(timeout)
            if m is None:
                return
            yield m

    def wait_for(self, pred: Any, timeout: float = 10.0) -> dict[str, Any]:
        """First message for which pred(msg) is true (others are discarded); UplinkError on timeout."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise UplinkError("timed out waiting for a matching message")
            m = self.recv(left)
            if m is not None and pred(m):
                return m

    def decoder_stats(self) -> dict[str, int]:
        return dict(self._dec.stats())

    def _waiting(self) -> int:
        """Bytes the port holds right now (pyserial's ``in_waiting``); 0 for ports without it."""
        try:
            return int(getattr(self._ser, "in_waiting", 0) or 0)
        except (serial.SerialException, OSError, TypeError, ValueError):
            return 0

    def _read_chunk(self) -> bytes:
        """What the port holds now, waiting up to its timeout for the first byte."""
        ser = self._ser
        assert ser is not None
        if not hasattr(ser, "in_waiting"):
            return bytes(ser.read(READ_MAX))    # ports that return what is there (ptys, fakes)
        n = self._waiting()
        if n:
            return bytes(ser.read(min(n, READ_MAX)))
        first = bytes(ser.read(1))              # pyserial: blocks up to the timeout
        n = self._waiting() if first else 0
        return first + bytes(ser.read(min(n, READ_MAX))) if n else first

    def _reader(self) -> None:
        assert self._ser is not None
        while not self._stop.is_set():
            try:
                data = self._read_chunk()
            except (serial.SerialException, OSError, TypeError):
                if self._stop.is_set():
                    return
                self.stats.io_errors += 1
                self.read_failures += 1
                time.sleep(0.05)
                continue
            self.read_failures = 0
            top = 0
            if data:
                # group commit: keep reading while the port has more (bounded), hand everything to the
                # sink in one call (the bridge commits it in one transaction), then one cumulative ack
                new: list[tuple[dict[str, Any], int]] = []
                t_end = time.monotonic() + GROUP_S
                while True:
                    for payload in self._dec.feed(data):
                        self.stats.frames += 1
                        try:
                            msg, s = self._payload(payload)
                        except Exception as exc:  # noqa: BLE001 - the reader survives any payload
                            self.stats.reader_errors += 1
                            self.stats.last_reader_error = f"{type(exc).__name__}: {exc}"[:200]
                            continue
                        top = max(top, s)
                        if msg is not None:
                            new.append((msg, s))
                    n = self._waiting()
                    if not n or len(new) >= GROUP_MAX or time.monotonic() > t_end:
                        break
                    try:
                        data = bytes(self._ser.read(min(n, READ_MAX)))
                    except (serial.SerialException, OSError, TypeError):
                        break                   # the next read counts it; deliver what arrived
                    if not data:
                        break
                if top and self._gw_boot in self._contig:
                    top = self._contig[self._gw_boot]   # the level of the current gateway boot only
                if new and not self._deliver(new):
                    top = 0
            if self._hole_since is not None and time.monotonic() - self._hole_since > HOLE_WAIT:
                top = max(top, self._give_up_hole())
            if top and self.auto_ack:
                try:
                    self.send({"t": "ack", "s": top})
                    self.stats.acks_sent += 1
                    self.stats.last_ack = top
                except (serial.SerialException, OSError, UplinkError):
                    pass
            elif time.monotonic() - self._last_tx >= self.hb_interval:
                try:
                    self.send({"t": "hb"})
                except (serial.SerialException, OSError, UplinkError):
                    pass
            self.stats.decoder = self._dec.stats()

    def _deliver(self, new: list[tuple[dict[str, Any], int]]) -> bool:
        """Hand new messages to the sink (then they may be acknowledged) or the queue. False if the sink
        failed: the sequence state is rolled back so the gateway's resend is taken as new."""
        if self.on_messages is not None:
            try:
                self.on_messages([m for m, _ in new])
            except Exception:
                self.stats.sink_errors += 1
                self._rollback(new)
                return False
        for msg, _ in new:
            if msg["t"] == "res" and isinstance(msg.get("id"), int):
                with self._plock:
                    w = self._pending.get(msg["id"])
                if w is not None:
                    w.put(msg)
            if self.on_messages is None:
                try:
                    self._q.put_nowait(msg)
                except queue.Full:
                    pass
        return True

    def _give_up_hole(self) -> int:
        """The oldest hole stayed open: the gateway's ring dropped those messages (already counted in
        ``gaps``). Returns the new acknowledgement level."""
        g = self._gw_boot
        above = self._above.get(g)
        if not above:
            self._hole_since = None
            return 0
        self._contig[g] = min(above) - 1
        self._advance(g)
        self._hole_since = time.monotonic() if self._above[g] else None
        return self._contig[g]

    def _advance(self, g: Any) -> None:
        above = self._above.setdefault(g, set())
        c = self._contig[g]
        while c + 1 in above:
            c += 1
            above.discard(c)
        self._contig[g] = c

    def _rollback(self, new: list[tuple[dict[str, Any], int]]) -> None:
        failed = {(msg.get("g"), msg.get("s")) for msg, _ in new}
        for msg, _ in new:
            d = msg.get("d")
            if msg["t"] == "tel" and isinstance(d, dict):
                prev = self._tel_seen.get(str(msg.get("from")))
                q = d.get("q")
                if prev is not None and prev[0] == d.get("boot") and isinstance(q, int) and q in prev[1]:
                    prev[1].remove(q)
            g, s = msg.get("g"), msg.get("s")
            if not isinstance(s, int) or g not in self._contig:
                continue
            above = self._above.setdefault(g, set())
            above.discard(s)
            if s <= self._contig[g]:
                # numbers between s and the old level that were stored in earlier chunks stay known
                above.update(x for x in range(s + 1, self._contig[g] + 1) if (g, x) not in failed)
                self._contig[g] = s - 1
        self.stats.messages -= len(new)

    def _seen_telemetry(self, msg: dict[str, Any]) -> bool:
        """True if this node's (boot, q) was delivered already. Remembers the last TEL_SEEN q per node for
        its latest boot (bounded: 64 per node)."""
        d = msg.get("d")
        node = msg.get("from")
        if not isinstance(d, dict) or not isinstance(node, str):
            return False
        boot, q = d.get("boot"), d.get("q")
        if not isinstance(q, int):
            return False
        prev = self._tel_seen.get(node)
        if prev is None or prev[0] != boot:
            prev = (boot, [])
            self._tel_seen[node] = prev
        seen = prev[1]
        if q in seen:
            return True
        seen.append(q)
        if len(seen) > TEL_SEEN:
            del seen[0]
        return False

    def _payload(self, payload: bytes) -> tuple[dict[str, Any] | None, int]:
        """(message to deliver or None, the uplink sequence to acknowledge or 0)."""
        try:
            msg = decode_payload(payload)
        except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            # TypeError: a map key msgpack cannot hash (e.g. an array key, 81 90 00)
            self.stats.bad_msgpack += 1
            return None, 0
        if msg is None:
            self.stats.bad_msg += 1
            return None, 0
        g = msg.get("g")
        s = msg.get("s")
        if not isinstance(g, int | str | None) or isinstance(s, bool):
            self.stats.bad_msg += 1
            return None, 0
        ack = 0
        if isinstance(s, int):
            if g != self._gw_boot:
                if self._gw_boot is not None:
                    self.stats.gateway_boots += 1
                self._gw_boot = g
                self._hole_since = None
            if g not in self._contig:          # first message of this gateway boot: it is the base
                self._contig[g] = s - 1
                self._above[g] = set()
            above = self._above[g]
            contig = self._contig[g]
            if s == contig + 1 and not above:  # the usual case: the next one, no hole open
                self._contig[g] = s
                self._hole_since = None
                self.stats.messages += 1
                if self.dedup_telemetry and msg["t"] == "tel" and self._seen_telemetry(msg):
                    self.stats.tel_duplicates += 1
                    return None, s
                return msg, s
            if s <= contig or s in above:
                self.stats.duplicates += 1
                return None, contig if g == self._gw_boot else 0
            highest = max(above) if above else contig
            if s > highest + 1:
                self.stats.gaps += s - highest - 1
            elif s < highest:
                self.stats.gaps -= 1           # a hole filled by the gateway's resend
            above.add(s)
            self._advance(g)
            if self._above[g]:
                if self._hole_since is None:
                    self._hole_since = time.monotonic()
            else:
                self._hole_since = None
            ack = self._contig[g]
        self.stats.messages += 1
        if self.dedup_telemetry and msg["t"] == "tel" and self._seen_telemetry(msg):
            # the same node message again (a repeat after a gateway reboot or re-pairing): acknowledged on
            # the uplink like any message, not delivered twice (docs/protocol.md, "exactly once")
            self.stats.tel_duplicates += 1
            return None, ack
        return msg, ack


class _Requester(Protocol):
    def request(self, op: str, /, to: str | None = None, timeout: float = 10.0, ttl: int | None = None,
                check: bool = True, **args: Any) -> dict[str, Any]: ...


def all_peers(port: _Requester, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Every node the gateway knows: ``peers`` answers a page at a time (docs/protocol.md), ``more`` is
    the offset of the next page. A gateway that does not page answers everything at once."""
    out: list[dict[str, Any]] = []
    off = 0
    for _ in range(10_000):     # bounded: a gateway knows at most a few hundred nodes
        res = port.request("peers", timeout=timeout, o=off) if off else port.request("peers", timeout=timeout)
        out.extend(p for p in res.get("r") or [] if isinstance(p, dict))
        nxt = res.get("more")
        if not isinstance(nxt, int) or nxt <= off:
            return out
        off = nxt
    raise UplinkError("peers: the gateway never ended its pages")
