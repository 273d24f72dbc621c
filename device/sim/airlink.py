# Board side of the air: the radio of one virtual board, on the UDP hub (air.py), on an in-process
# LoopbackMedium (device tests: several boards in one process), or on no medium at all (frames vanish).
import air
import simboard
from simboard import sleep_ms as _sleep_ms, ticks_diff as _ticks_diff, ticks_ms as _ticks_ms

try:
    import select
except ImportError:  # pragma: no cover
    select = None

ACK_TIMEOUT_MS = 1000
REGISTER_EVERY_MS = 2000


class Radio:
    """One board's radio. `sink(src, dst, rssi, flags, tag, payload)` receives frames; `acks` maps the
    sequence number of each unicast transmission to True/False once the medium answered."""

    def __init__(self, board, sink):
        self.board = board
        self.sink = sink
        self.seq = 0
        self.acks = {}
        self.on = False
        self.mac = bytes(board.mac)
        self.channel = board.channel
        self.medium = board.medium
        self.sock = None
        self.addr = None
        self.poller = None
        self.last_reg = 0
        self.registered = False
        if self.medium is None and board.air:
            self._open_udp(board.air)

    # -- UDP hub --
    def _open_udp(self, spec):
        import socket
        host, _, port = str(spec).rpartition(":")
        try:
            port = int(port)
        except ValueError:
            raise ValueError("FIELDLINK_AIR must be host:port, got %r" % (spec,))
        self.addr = socket.getaddrinfo(host or "127.0.0.1", port)[0][-1]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(socket.getaddrinfo("127.0.0.1", 0)[0][-1])
        self.poller = select.poll()
        self.poller.register(self.sock, select.POLLIN)

    def _send_udp(self, data):
        try:
            self.sock.sendto(data, self.addr)
        except OSError:
            pass

    def _register(self, wait=True):
        self._send_udp(b"R" + self.mac + bytes([self.channel]))
        self.last_reg = _ticks_ms()
        if wait:  # so that "ready" really means reachable: wait briefly for the hub's answer
            deadline = _ticks_ms() + 500
            self.registered = False
            while not self.registered and _ticks_diff(deadline, _ticks_ms()) > 0:
                self.poll(20)

    # -- common --
    def start(self):
        self.mac = bytes(self.board.mac)
        self.channel = self.board.channel
        self.on = True
        if self.medium is not None:
            self.medium.register(self)
        elif self.sock is not None:
            self._register()

    def refresh(self):
        if not self.on:
            return
        old = self.mac
        self.mac = bytes(self.board.mac)
        self.channel = self.board.channel
        if self.medium is not None:
            self.medium.unregister_mac(old)
            self.medium.register(self)
        elif self.sock is not None:
            if old != self.mac:
                self._send_udp(b"U" + old)
            self._register()

    def stop(self):
        if not self.on:
            return
        self.on = False
        if self.medium is not None:
            self.medium.unregister_mac(self.mac)
        elif self.sock is not None:
            self._send_udp(b"U" + self.mac)

    def close(self):
        self.stop()
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def transmit(self, dst, payload, flags=0, tag=0):
        self.seq = (self.seq + 1) & 0xFFFF
        seq = self.seq
        if dst != air.BROADCAST:
            self.acks[seq] = None
        if self.medium is not None:
            self.medium.transmit(self, dst, seq, flags, tag, payload)
        elif self.sock is not None:
            if _ticks_diff(_ticks_ms(), self.last_reg) > REGISTER_EVERY_MS:
                self._register(wait=False)
            self._send_udp(b"T" + self.mac + dst + seq.to_bytes(2, "big") + bytes([flags]) +
                           tag.to_bytes(4, "big") + payload)
        elif dst != air.BROADCAST:
            self.acks[seq] = False  # nobody out there
        return seq

    def deliver(self, src, dst, rssi, flags, tag, payload):
        if self.on:
            self.sink(src, dst, rssi, flags, tag, payload)

    def poll(self, timeout_ms=0, max_frames=None):
        """Take what the medium has for us; wait up to timeout_ms for the first datagram (UDP only).
        max_frames: stop after that many ESP-NOW frames (an app blocked in recv() takes frames one by
        one as they arrive, so a backlog in the socket must not all hit the ring buffer at once)."""
        if self.sock is None:
            return
        if self.on and _ticks_diff(_ticks_ms(), self.last_reg) > REGISTER_EVERY_MS:
            self._register(wait=False)
        t = timeout_ms
        frames = 0
        while True:
            ev = self.poller.poll(t)
            if not ev:
                return
            t = 0
            try:
                data, _addr = self.sock.recvfrom(2048)
            except OSError:
                return
            self._datagram(data)
            if data and data[0] == 0x46:
                frames += 1
                if max_frames is not None and frames >= max_frames:
                    return

    def _datagram(self, data):
        if not data:
            return
        k = data[0]
        if k == 0x46 and len(data) >= 18:  # F
            rssi = data[13]
            if rssi > 127:
                rssi -= 256
            self.deliver(bytes(data[1:7]), bytes(data[7:13]), rssi, data[14],
                         int.from_bytes(data[15:19], "big"), bytes(data[19:]))
        elif k == 0x41 and len(data) == 10:  # A
            seq = int.from_bytes(data[1:3], "big")
            if seq in self.acks:
                self.acks[seq] = data[9] == 1
        elif k == 0x72:  # r
            self.registered = True

    def wait_acks(self, seqs, timeout_ms=ACK_TIMEOUT_MS):
        """Block until every seq has an answer (or timeout: no answer = no ack). Returns list of bools."""
        deadline = _ticks_ms() + timeout_ms
        while True:
            if all(self.acks.get(s) is not None for s in seqs):
                break
            left = _ticks_diff(deadline, _ticks_ms())
            if left <= 0:
                break
            if self.sock is None:
                _sleep_ms(1)
            else:
                self.poll(min(left, 50))
        return [bool(self.acks.pop(s, False)) for s in seqs]


class LoopbackMedium:
    """In-process air for several boards in one process (device tests). Same LinkModel as the hub
    (loss, duplication, corruption, RSSI, ack loss, seeded); latency is not modelled (delivery is
    immediate). Frames only reach radios on the sender's channel."""

    def __init__(self, seed=1, **defaults):
        self.model = air.LinkModel(seed, **defaults)
        self.radios = {}
        self.stats = {"frames": 0, "delivered": 0, "lost": 0}

    def set_link(self, src="*", dst="*", **params):
        self.model.set_link(None if src in (None, "*") else simboard.parse_mac(src),
                            None if dst in (None, "*") else simboard.parse_mac(dst), **params)

    def register(self, radio):
        self.radios[radio.mac] = radio

    def unregister_mac(self, mac):
        self.radios.pop(mac, None)

    def transmit(self, radio, dst, seq, flags, tag, payload):
        self.stats["frames"] += 1
        src = radio.mac
        if dst == air.BROADCAST:
            targets = [r for m, r in self.radios.items() if m != src and r.channel == radio.channel]
        else:
            r = self.radios.get(dst)
            targets = [r] if (r is not None and r.channel == radio.channel) else []
        acked = False
        for t in targets:
            copies, ack = self.model.plan(src, t.mac, payload)
            if not copies:
                self.stats["lost"] += 1
                continue
            for _delay, rssi, body in copies:
                self.stats["delivered"] += 1
                t.deliver(src, dst, rssi, flags, tag, body)
            acked = acked or ack
        if dst != air.BROADCAST:
            radio.acks[seq] = acked
