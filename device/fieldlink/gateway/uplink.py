# Gateway side of the serial uplink (docs/protocol.md "Uplink messages (gateway <-> host)").
#
# Wire: frame = COBS(msgpack(map) || CRC16) || 0x00 (fieldlink.codec.serialframe), 921600 baud on USB CDC.
#
# Reliability: every gateway->host message gets "g" (gateway boot id) and "s" (uplink sequence,
# 1, 2, 3 ... per boot) and is kept in a bounded RAM ring until the host acknowledges it with
# {"t": "ack", "s": N} (cumulative: everything <= N). While the host is away (nothing heard from it for
# host_timeout_ms, or the line reports hang-up) nothing is written and messages accumulate in the ring;
# when it is full the OLDEST message is dropped and counted (ring_dropped). When the host is heard again
# (any valid frame: hello, hb, ack, cmd) the uplink rewinds to the oldest unacknowledged message and
# sends everything in order (go-back-N, at most `window` unacknowledged messages in flight; after
# ack_timeout_ms without progress it rewinds again). Host->gateway messages other than ack/hello/hb are
# handed to on_message(msg).
#
# Bad input never raises: framing/CRC/oversize errors are counted by the FrameDecoder, undecodable
# msgpack in bad_msgpack, payloads that are not a map with a str "t" in bad_msg, unknown "t" values in
# unknown_type (the on_message callback returns False for unknown types).
#
# Transports: StdioTransport (hardware USB CDC / a pty given as the process's stdin+stdout) and
# FileTransport (a device path such as a pty slave, opened read+write). Tests use any object with
# read() -> bytes or None, write(data) -> bool, writable() -> bool and hup() -> bool.
import sys

try:
    import select
except ImportError:  # pragma: no cover
    select = None

from fieldlink.codec import mpack
from fieldlink.errors import DecodeError
from fieldlink.codec.native_frame import FrameDecoder, encode_frame  # native C core when present
from fieldlink.gateway.ringbuf import RingBuffer
from fieldlink.runtime.clock import asleep_ms, ticks_diff, ticks_ms

COUNTERS = ("rx_frames", "bad_msgpack", "bad_msg", "unknown_type", "tx_frames", "tx_bytes",
            "retransmits", "write_errors", "host_up", "host_down", "handler_errors")


class _PollReader:
    # Reads what is available from a blocking stream without blocking: poll(0) then 1-byte reads
    # (MicroPython's stream read(n) waits for all n bytes).
    def __init__(self, fin, fout, max_chunk=512):
        self.fin = fin
        self.fout = fout
        self.max_chunk = max_chunk
        self._p = select.poll()
        self._p.register(fin, select.POLLIN)
        self._pw = select.poll()
        self._pw.register(fout, select.POLLOUT)
        self._b1 = bytearray(1)
        self._ipoll = hasattr(self._p, "ipoll")
        self._hup = False
        self._fd = None
        try:
            import os
            if hasattr(os, "read") and hasattr(fin, "fileno"):
                self._fd = fin.fileno()
                self._os = os
        except Exception:
            self._fd = None

    def _ready(self):
        # MicroPython: ipoll() yields a reused tuple, where poll() builds a new list on every call, even an
        # empty one; the idle uplink loop calls this ~200 times a second and must not allocate.
        e = 0
        if self._ipoll:
            for t in self._p.ipoll(0):
                e = t[1]
        else:
            ev = self._p.poll(0)
            if ev:
                e = ev[0][1]
        if not e:
            self._hup = False
            return False
        if e & select.POLLIN:
            return True
        if e & (select.POLLHUP | select.POLLERR):
            self._hup = True
        return False

    def read(self):
        if not self._ready():
            return None
        if self._fd is not None:  # CPython: one read() syscall returns what is there
            try:
                data = self._os.read(self._fd, self.max_chunk)
            except OSError:
                self._hup = True
                return None
            if not data:
                self._hup = True
                return None
            return data
        out = bytearray()
        b1 = self._b1
        while len(out) < self.max_chunk:
            try:
                n = self.fin.readinto(b1)
            except OSError:
                self._hup = True
                break
            if not n:
                self._hup = True
                break
            out.append(b1[0])
            if not self._ready():
                break
        return bytes(out) if out else None

    def writable(self):
        ev = self._pw.poll(0)
        if not ev:
            return False
        e = ev[0][1]
        if e & (select.POLLHUP | select.POLLERR):
            self._hup = True
            return False
        return bool(e & select.POLLOUT)

    def write(self, data):
        """Write one whole frame; False if the stream refused it (nothing or only part went out)."""
        mv = memoryview(data)
        tries = 0
        while len(mv):
            try:
                n = self.fout.write(mv)
            except OSError:
                return False
            if n is None or n <= 0:
                tries += 1
                if tries > 3:
                    return False
                continue
            mv = mv[n:]
        if hasattr(self.fout, "flush"):
            try:
                self.fout.flush()
            except OSError:
                # the bytes are already written: MicroPython's FileIO.flush() is fsync(), which fails
                # with EINVAL on a tty/pty. Counting that as a failed write made the gateway send every
                # frame twice (the host dropped the duplicates, counted).
                pass
        return True

    def hup(self):
        return self._hup


class StdioTransport(_PollReader):
    """The process's stdin/stdout as the uplink (hardware: USB CDC with the REPL detached)."""

    def __init__(self):
        fin = sys.stdin.buffer
        fout = sys.stdout.buffer
        if hasattr(fin, "raw") and not hasattr(sys, "print_exception"):
            fin = fin.raw  # CPython: avoid the BufferedReader hiding bytes from poll()
        _PollReader.__init__(self, fin, fout)


class FileTransport(_PollReader):
    """A character device path (pty slave in raw mode, /dev/ttyACM0 ...) opened for read and write."""

    def __init__(self, path):
        fin = open(path, "rb")
        fout = open(path, "wb")
        _PollReader.__init__(self, fin, fout)
        self.path = path

    def close(self):
        for f in (self.fin, self.fout):
            try:
                f.close()
            except Exception:
                pass


def detach_repl():
    """Hardware: stop the REPL from reading the USB CDC so the uplink owns it (Ctrl-C disabled too).

    os.dupterm(None, 0) detaches a duplicated terminal where the port supports it; kbd_intr(-1)
    makes 0x03 an ordinary data byte instead of KeyboardInterrupt.
    """
    try:
        import micropython
        micropython.kbd_intr(-1)
    except Exception:
        pass
    try:
        import os
        if hasattr(os, "dupterm"):
            os.dupterm(None, 0)
    except Exception:
        pass


class Uplink:
    def __init__(self, transport, boot=0, capacity=256, window=16, ack_timeout_ms=1000,
                 host_timeout_ms=3000, max_frame=1024, max_bytes=0, log=None, clock=ticks_ms):
        self.t = transport
        self.boot = boot
        self.ring = RingBuffer(capacity, max_bytes)
        self.window = window
        self.ack_timeout_ms = ack_timeout_ms
        self.host_timeout_ms = host_timeout_ms
        self.dec = FrameDecoder(max_frame)
        self.log = log
        self.clock = clock
        self.on_message = None  # callable(msg) -> bool (False = unknown type)
        self.on_host = None  # callable(present) on host presence changes
        self.seq = 0  # last assigned sequence
        self.acked = 0  # highest sequence acknowledged by the host
        self._next = 0  # ring index of the next message to (re)send
        self._last_rx = None
        self._last_progress = clock()
        self.present = False
        self.counters = {}
        for k in COUNTERS:
            self.counters[k] = 0
        self._running = False

    # ------------------------------------------------------------------ outgoing
    def send(self, msg):
        """Queue a message (dict with "t") for the host; returns its sequence number."""
        self.seq += 1
        msg["g"] = self.boot
        msg["s"] = self.seq
        try:
            data = encode_frame(mpack.packb(msg))
        except Exception as e:
            self.counters["handler_errors"] += 1
            if self.log:
                self.log.warn("uplink: cannot encode %r: %s" % (msg.get("t"), e))
            return 0
        dropped = self.ring.push((self.seq, data), len(data))
        if dropped:
            self._next = max(0, self._next - dropped)
        return self.seq

    def pending(self):
        """Messages held in the ring (sent but unacknowledged + not yet sent)."""
        return len(self.ring)

    def _ack(self, s):
        if not isinstance(s, int) or s <= self.acked or s > self.seq:
            return
        self.acked = s
        n = 0
        while len(self.ring) and self.ring.peek(0)[0] <= s:
            self.ring.popleft()
            n += 1
        self._next = max(0, self._next - n)
        self._last_progress = self.clock()

    def _rewind(self):
        if self._next:
            self.counters["retransmits"] += self._next
        self._next = 0
        self._last_progress = self.clock()

    def transmit(self, now=None):
        """Write queued messages while the host is present and the window allows; returns frames written."""
        now = self.clock() if now is None else now
        if not self.present:
            return 0
        if self._next and ticks_diff(now, self._last_progress) >= self.ack_timeout_ms:
            self._rewind()
        n = 0
        while self._next < len(self.ring) and self._next < self.window:
            if not self.t.writable():
                break
            data = self.ring.peek(self._next)[1]
            if not self.t.write(data):
                self.counters["write_errors"] += 1
                break
            if self._next == 0:
                self._last_progress = now
            self._next += 1
            n += 1
            self.counters["tx_frames"] += 1
            self.counters["tx_bytes"] += len(data)
        return n

    # ------------------------------------------------------------------ incoming
    def _set_present(self, p):
        if p == self.present:
            return
        self.present = p
        self.counters["host_up" if p else "host_down"] += 1
        if p:
            self._rewind()  # the host may have missed what was in flight: resend from the oldest
        if self.on_host is not None:
            try:
                self.on_host(p)
            except Exception:
                self.counters["handler_errors"] += 1

    def receive(self, now=None):
        """Read and dispatch everything available; returns the number of valid messages."""
        now = self.clock() if now is None else now
        n = 0
        while True:
            data = self.t.read()
            if not data:
                break
            for payload in self.dec.feed(data):
                self.counters["rx_frames"] += 1
                self._payload(payload, now)
                n += 1
        if self.t.hup():
            self._set_present(False)
        elif self.present and self._last_rx is not None and ticks_diff(now, self._last_rx) >= self.host_timeout_ms:
            self._set_present(False)
        return n

    def _payload(self, payload, now):
        try:
            msg = mpack.unpackb(payload)
        except DecodeError:
            self.counters["bad_msgpack"] += 1
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("t"), str):
            self.counters["bad_msg"] += 1
            return
        self._last_rx = now
        self._set_present(True)
        t = msg["t"]
        if t == "ack":
            self._ack(msg.get("s"))
            return
        if t == "hello":
            self._rewind()
            return
        if t == "hb":
            if "s" in msg:
                self._ack(msg.get("s"))
            return
        ok = False
        if self.on_message is not None:
            try:
                ok = self.on_message(msg)
            except Exception as e:
                self.counters["handler_errors"] += 1
                if self.log:
                    self.log.error("uplink handler %s: %s" % (t, e))
                return
        if ok is False:
            self.counters["unknown_type"] += 1

    def step(self, now=None):
        now = self.clock() if now is None else now
        got = self.receive(now)
        sent = self.transmit(now)
        return got + sent

    async def run(self, idle_ms=5):
        self._running = True
        while self._running:
            if not self.step():
                await asleep_ms(idle_ms)
            else:
                await asleep_ms(0)

    def stop(self):
        self._running = False

    def stats(self):
        d = dict(self.counters)
        d.update(self.dec.stats())
        d["ring"] = len(self.ring)
        d["ring_cap"] = self.ring.capacity
        d["ring_dropped"] = self.ring.dropped
        d["seq"] = self.seq
        d["acked"] = self.acked
        d["host"] = self.present
        return d
