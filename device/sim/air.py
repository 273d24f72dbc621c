# The fieldlink "air": a tiny radio medium for virtual boards on 127.0.0.1 UDP.
#
# Run the hub:   micropython air.py --port P [--seed N] [--loss X ...]
#           or   python -m fieldlink_sim.air --port P
# It prints one line "air: listening on 127.0.0.1:PORT" (PORT is real even with --port 0) and then serves
# until killed or told {"op": "stop"}.
#
# Datagrams (binary, big-endian) between a board radio and the hub:
#   board -> hub  b"R" mac6 ch1            register / refresh (hub answers b"r" mac6)
#                 b"U" mac6                unregister
#                 b"T" src6 dst6 seq2 flags1 tag4 payload   transmit one ESP-NOW frame
#   hub -> board  b"F" src6 dst6 rssi1(signed) flags1 tag4 payload   a received frame
#                 b"A" seq2 dst6 ok1       MAC-level ack (ok=1) / no ack (ok=0) for a unicast frame
# Control (JSON object, one per datagram, answered with a JSON object to the sender):
#   {"op": "ping"} | {"op": "link", "src": MAC|"*", "dst": MAC|"*", "loss": 0.3, "latency_ms": 5,
#   "jitter_ms": 0, "dup": 0.0, "corrupt": 0.0, "rssi": -55, "ack_loss": 0.0} | {"op": "reset_links"}
#   | {"op": "seed", "seed": 1} | {"op": "stats"} | {"op": "boards"} | {"op": "stop"}
# Bad datagrams are counted ("bad") and dropped; the hub never dies on input.
#
# LinkModel is shared with the in-process LoopbackMedium (airlink.py) so both behave the same.
import sys

try:
    import json
except ImportError:  # pragma: no cover
    import ujson as json

LINK_KEYS = ("loss", "latency_ms", "jitter_ms", "dup", "corrupt", "rssi", "ack_loss")
DEFAULTS = {"loss": 0.0, "latency_ms": 0, "jitter_ms": 0, "dup": 0.0, "corrupt": 0.0, "rssi": -50,
            "ack_loss": 0.0}
BROADCAST = b"\xff" * 6


def mac_text(mac):
    return ":".join("%02x" % b for b in mac)


def parse_mac(text):
    """'aa:bb:cc:dd:ee:ff', 'aabbccddeeff' or 6 bytes -> 6 bytes; ValueError otherwise."""
    if isinstance(text, (bytes, bytearray)):
        if len(text) != 6:
            raise ValueError("MAC must be 6 bytes")
        return bytes(text)
    if not isinstance(text, str):
        raise ValueError("MAC must be a string")
    h = text.replace(":", "").replace("-", "")
    if len(h) != 12:
        raise ValueError("bad MAC %r" % (text,))
    try:
        return bytes(int(h[i:i + 2], 16) for i in range(0, 12, 2))
    except ValueError:
        raise ValueError("bad MAC %r" % (text,))


class Rng:
    """xorshift32: the same sequence under CPython and MicroPython for a given seed."""

    def __init__(self, seed=1):
        self.seed(seed)

    def seed(self, seed):
        self.s = (int(seed) * 2654435761 + 0x9E3779B9) & 0xFFFFFFFF or 1

    def u32(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x

    def random(self):
        return self.u32() / 4294967296.0


def check_params(params):
    """Validate link parameters (dict); return a clean dict or raise ValueError."""
    out = {}
    for k, v in params.items():
        if k not in LINK_KEYS:
            raise ValueError("unknown link parameter %r" % (k,))
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError("link parameter %s must be a number" % k)
        if k in ("loss", "dup", "corrupt", "ack_loss") and not 0.0 <= v <= 1.0:
            raise ValueError("link parameter %s must be in 0..1" % k)
        if k in ("latency_ms", "jitter_ms") and not 0 <= v <= 60000:
            raise ValueError("link parameter %s must be in 0..60000" % k)
        if k == "rssi" and not -127 <= v <= 0:
            raise ValueError("link parameter rssi must be in -127..0")
        out[k] = v
    return out


class LinkModel:
    """Per-link loss/latency/duplication/corruption/RSSI with wildcard rules and a seeded RNG.

    Lookup order (later wins): defaults, (src, *), (*, dst), (src, dst)."""

    def __init__(self, seed=1, **defaults):
        self.rng = Rng(seed)
        self.defaults = dict(DEFAULTS)
        self.defaults.update(check_params(defaults))
        self.rules = {}

    def set_link(self, src=None, dst=None, **params):
        params = check_params(params)
        if src is None and dst is None:
            self.defaults.update(params)
            return
        key = (src, dst)
        cur = self.rules.get(key, {})
        cur.update(params)
        self.rules[key] = cur

    def reset(self):
        self.defaults = dict(DEFAULTS)
        self.rules = {}

    def params(self, src, dst):
        p = dict(self.defaults)
        for key in ((src, None), (None, dst), (src, dst)):
            r = self.rules.get(key)
            if r:
                p.update(r)
        return p

    def plan(self, src, dst, payload):
        """Decide the fate of one frame on the link src->dst.

        Returns (copies, ack) where copies is a list of (delay_ms, rssi, payload) (empty if lost) and ack
        says whether the sender sees a MAC-level ack."""
        p = self.params(src, dst)
        rng = self.rng
        if p["loss"] and rng.random() < p["loss"]:
            return [], False
        n = 2 if (p["dup"] and rng.random() < p["dup"]) else 1
        copies = []
        for _ in range(n):
            delay = p["latency_ms"]
            if p["jitter_ms"]:
                delay += rng.random() * p["jitter_ms"]
            data = payload
            if p["corrupt"] and payload and rng.random() < p["corrupt"]:
                b = bytearray(payload)
                i = rng.u32() % len(b)
                b[i] ^= 1 << (rng.u32() % 8)
                data = bytes(b)
            rssi = int(p["rssi"]) + (rng.u32() % 5) - 2
            copies.append((int(delay), max(-127, min(0, rssi)), data))
        ack = not (p["ack_loss"] and rng.random() < p["ack_loss"])
        return copies, ack


def _now_ms():
    import time
    try:
        return time.ticks_ms()
    except AttributeError:
        return int(time.monotonic() * 1000)


def _diff(a, b):
    import time
    try:
        return time.ticks_diff(a, b)
    except AttributeError:
        return a - b


def _env(name):
    try:
        import os
        return os.getenv(name) or ""
    except (ImportError, AttributeError):
        return ""


class Hub:
    def __init__(self, port=0, host="127.0.0.1", seed=1, **defaults):
        import socket
        self.model = LinkModel(seed, **defaults)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.port = self._bind(socket, host, port)
        self.host = host
        self.boards = {}  # mac -> [addr, channel, tx, rx]
        self.queue = []  # [due_ms, seq_no, addr, datagram]
        self.nq = 0
        self.stats = {"frames": 0, "delivered": 0, "lost": 0, "acks": 0, "nacks": 0, "bad": 0, "control": 0}
        self.running = True
        self.token = _env("FIELDLINK_AIR_TOKEN")

    def _bind(self, socket, host, port):
        if port:
            self.sock.bind(socket.getaddrinfo(host, port)[0][-1])
            return port
        if hasattr(self.sock, "getsockname"):
            self.sock.bind(socket.getaddrinfo(host, 0)[0][-1])
            return self.sock.getsockname()[1]
        # MicroPython has no getsockname(): pick free ports ourselves.
        import os
        last = None
        for _ in range(200):
            p = 20000 + (int.from_bytes(os.urandom(2), "big") % 40000)
            try:
                self.sock.bind(socket.getaddrinfo(host, p)[0][-1])
                return p
            except OSError as e:
                last = e
        raise OSError("no free port: %s" % last)

    def send(self, addr, data):
        try:
            self.sock.sendto(data, addr)
        except OSError:
            pass

    def later(self, delay, addr, data):
        if delay <= 0:
            self.send(addr, data)
            return
        self.nq += 1
        item = (_now_ms() + delay, self.nq, addr, data)
        q = self.queue
        i = len(q)
        while i > 0 and _diff(q[i - 1][0], item[0]) > 0:
            i -= 1
        q.insert(i, item)

    def handle(self, data, addr):
        if not data:
            self.stats["bad"] += 1
            return
        kind = data[0]
        if kind == 0x7B:  # "{"
            self.control(data, addr)
        elif kind == 0x52 and len(data) == 8:  # R
            mac = bytes(data[1:7])
            ent = self.boards.get(mac)
            if ent is None:
                self.boards[mac] = [addr, data[7], 0, 0]
            else:
                ent[0] = addr
                ent[1] = data[7]
            self.send(addr, b"r" + mac)
        elif kind == 0x55 and len(data) == 7:  # U
            self.boards.pop(bytes(data[1:7]), None)
        elif kind == 0x54 and len(data) >= 20:  # T
            self.transmit(data, addr)
        else:
            self.stats["bad"] += 1

    def transmit(self, data, addr):
        src = bytes(data[1:7])
        dst = bytes(data[7:13])
        seq = data[13:15]
        flags_tag = data[15:20]
        payload = bytes(data[20:])
        st = self.stats
        st["frames"] += 1
        me = self.boards.get(src)
        if me is None:  # unregistered sender: register it implicitly on channel 1
            me = self.boards[src] = [addr, 1, 0, 0]
        me[0] = addr
        me[2] += 1
        chan = me[1]
        if dst == BROADCAST:
            targets = [m for m, e in self.boards.items() if m != src and e[1] == chan]
        else:
            e = self.boards.get(dst)
            targets = [dst] if (e is not None and e[1] == chan) else []
        acked = False
        max_delay = 0
        for t in targets:
            copies, ack = self.model.plan(src, t, payload)
            if not copies:
                st["lost"] += 1
                continue
            ent = self.boards[t]
            for delay, rssi, body in copies:
                st["delivered"] += 1
                ent[3] += 1
                frame = b"F" + src + dst + bytes([rssi & 0xFF]) + flags_tag + body
                self.later(delay, ent[0], frame)
                if delay > max_delay:
                    max_delay = delay
            acked = acked or ack
        if dst != BROADCAST:
            st["acks" if acked else "nacks"] += 1
            self.later(max_delay, addr, b"A" + seq + dst + (b"\x01" if acked else b"\x00"))

    def control(self, data, addr):
        self.stats["control"] += 1
        try:
            msg = json.loads(data)
            if not isinstance(msg, dict):
                raise ValueError("control message must be a JSON object")
            reply = self.op(msg)
        except (ValueError, TypeError, KeyError) as e:
            self.stats["bad"] += 1
            reply = {"ok": False, "error": str(e)}
        self.send(addr, json.dumps(reply).encode())

    def op(self, msg):
        op = msg.get("op")
        # only the launcher knows the token (FIELDLINK_AIR_TOKEN at start): other local senders may ping
        if self.token and op != "ping" and msg.get("token") != self.token:
            raise ValueError("control message without the launcher's token")
        if op == "ping":
            return {"ok": True, "op": "pong", "port": self.port}
        if op == "link":
            src = msg.get("src", "*")
            dst = msg.get("dst", "*")
            params = {}
            for k in msg:
                if k not in ("op", "src", "dst", "token"):
                    params[k] = msg[k]
            self.model.set_link(None if src == "*" else parse_mac(src), None if dst == "*" else parse_mac(dst),
                                **params)
            return {"ok": True}
        if op == "reset_links":
            self.model.reset()
            return {"ok": True}
        if op == "seed":
            self.model.rng.seed(int(msg["seed"]))
            return {"ok": True}
        if op == "stats":
            r = dict(self.stats)
            r["ok"] = True
            r["boards"] = {mac_text(m): {"channel": e[1], "tx": e[2], "rx": e[3]} for m, e in self.boards.items()}
            return r
        if op == "boards":
            return {"ok": True, "boards": {mac_text(m): e[1] for m, e in self.boards.items()}}
        if op == "stop":
            self.running = False
            return {"ok": True}
        raise ValueError("unknown op %r" % (op,))

    def serve(self):
        import select
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        while self.running:
            timeout = -1
            if self.queue:
                timeout = max(0, _diff(self.queue[0][0], _now_ms()))
            for _ev in poller.poll(timeout):
                try:
                    data, addr = self.sock.recvfrom(2048)
                except OSError:
                    continue
                try:
                    self.handle(data, addr)
                except Exception as e:  # noqa: BLE001 - the hub must survive any datagram
                    self.stats["bad"] += 1
                    print("air: dropped bad datagram:", repr(e))
            now = _now_ms()
            while self.queue and _diff(self.queue[0][0], now) <= 0:
                item = self.queue.pop(0)
                self.send(item[2], item[3])
        self.sock.close()


USAGE = ("usage: air.py [--port P] [--host H] [--seed N] [--loss X] [--latency-ms N] [--jitter-ms N] "
         "[--dup X] [--corrupt X] [--rssi N] [--ack-loss X]")


def parse_args(argv):
    opts = {"port": 0, "host": "127.0.0.1", "seed": 1}
    link = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            raise SystemExit(USAGE)
        if not a.startswith("--") or i + 1 >= len(argv):
            raise ValueError("bad argument %r" % a)
        key = a[2:].replace("-", "_")
        val = argv[i + 1]
        i += 2
        if key in ("port", "seed"):
            opts[key] = int(val)
        elif key == "host":
            opts[key] = val
        elif key in LINK_KEYS:
            link[key] = float(val) if key in ("loss", "dup", "corrupt", "ack_loss") else int(val)
        else:
            raise ValueError("unknown option %r" % a)
    return opts, check_params(link)


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    try:
        opts, link = parse_args(argv)
    except ValueError as e:
        print("air: error:", e)
        print(USAGE)
        sys.exit(2)
    hub = Hub(opts["port"], opts["host"], opts["seed"], **link)
    print("air: listening on %s:%d" % (hub.host, hub.port))
    try:
        sys.stdout.flush()
    except AttributeError:
        pass
    try:
        hub.serve()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
