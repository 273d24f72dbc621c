# CircuitPython `espnow` for the virtual board (CircuitPython 9/10 API, circuitpython-stubs): ESPNow,
# Peer, Peers, ESPNowPacket on the virtual air (device/sim/airlink.py Radio: UDP hub or loopback).
#
# Semantics of the Espressif port (ports/espressif/common-hal/espnow/ESPNow.c):
# - ESPNow(buffer_size=526, phy_rate=0) is a singleton: a second one while the first lives raises
#   RuntimeError("Already running"); deinit() releases it.
# - send(message, peer=None) queues the frame and returns None; it does not wait for the MAC-layer
#   acknowledgement: the send callback counts it later in send_success / send_failure. peer=None sends to
#   every registered peer except broadcast. ESP-IDF errors (peer not registered, wrong channel or
#   interface) raise espidf.IDFError.
# - read() -> ESPNowPacket(mac, msg, rssi, time) or None, never blocks. Received frames go to a ring
#   buffer of buffer_size bytes (13 bytes of header per packet); a frame that does not fit is dropped and
#   counted in read_failure. len(e) is the number of bytes waiting, bool(e) whether any are.
# - Frames from any sender are received; encrypted frames only from a peer registered with encrypted=True
#   and the same LMK under the same PMK (the sim's tag model, see device/sim/espnow.py).
# - The radio sends and listens on the board channel (wifi.radio / simboard); a peer with channel N != 0
#   different from it cannot be sent to. Frames travel only while wifi.radio.enabled.
import airlink
import espidf
import microcontroller
import simboard
from simboard import ticks_ms as _ticks_ms

MAX_DATA_LEN = 250
KEY_LEN = 16
MAX_TOTAL_PEER_NUM = 20
MAX_ENCRYPT_PEER_NUM = 6
BROADCAST = b"\xff" * 6
DEFAULT_PMK = b"pmk1234567890123"
_HEADER = 13  # ring-buffer bytes per packet besides the message (header + MAC)

ESP_ERR_ESPNOW_BASE = 0x3000 + 100
_ERRS = {"NOT_FOUND": 5, "EXIST": 7, "FULL": 4, "IF": 8, "CHAN": 9, "ARG": 2}


def _idf(name):
    code = ESP_ERR_ESPNOW_BASE + _ERRS[name]
    return espidf.IDFError(code, "ESP_ERR_ESPNOW_" + name)


def _bytes(v, n, what):
    if isinstance(v, str):
        v = v.encode()
    v = bytes(v)
    if len(v) != n:
        raise ValueError("%s length must be %d" % (what, n))
    return v


class ESPNowPacket:
    """A namedtuple on CircuitPython: mac, msg, rssi, time (ms since boot when received)."""

    def __init__(self, mac, msg, rssi, time):
        self.mac = mac
        self.msg = msg
        self.rssi = rssi
        self.time = time

    def __iter__(self):
        return iter((self.mac, self.msg, self.rssi, self.time))

    def __getitem__(self, i):
        return (self.mac, self.msg, self.rssi, self.time)[i]

    def __len__(self):
        return 4

    def __repr__(self):
        return "ESPNowPacket(mac=%r, msg=%r, rssi=%d, time=%d)" % (self.mac, self.msg, self.rssi, self.time)


class Peer:
    def __init__(self, mac, *, lmk=None, channel=0, interface=0, encrypted=False):
        self.mac = _bytes(mac, 6, "mac")
        self.lmk = None if lmk is None else _bytes(lmk, KEY_LEN, "lmk")
        if not isinstance(channel, int) or not 0 <= channel <= 14:
            raise ValueError("channel must be 0-14")
        if interface not in (0, 1):
            raise ValueError("interface must be 0-1")
        self.channel = channel
        self.interface = interface
        self.encrypted = bool(encrypted)

    def __repr__(self):
        return "Peer(mac=%r, lmk=%r, channel=%d, interface=%d, encrypted=%s)" % (
            self.mac, self.lmk, self.channel, self.interface, self.encrypted)


class Peers:
    """The registered peers (esp_now_add_peer / esp_now_del_peer); a subset of list: append, remove,
    len, indexing, iteration."""

    def __init__(self, _core=None):
        if _core is None:
            raise TypeError("cannot create 'Peers' instances")
        self._core = _core
        self._list = []

    def append(self, peer):
        if not isinstance(peer, Peer):
            raise TypeError("expected a Peer")
        self._core.check()
        if any(p.mac == peer.mac for p in self._list):
            raise _idf("EXIST")
        if peer.encrypted and (peer.lmk is None or peer.mac == BROADCAST):
            raise _idf("ARG")
        if len(self._list) >= MAX_TOTAL_PEER_NUM or \
                (peer.encrypted and sum(1 for p in self._list if p.encrypted) >= MAX_ENCRYPT_PEER_NUM):
            raise _idf("FULL")
        self._list.append(peer)

    def remove(self, peer):
        self._core.check()
        for i, p in enumerate(self._list):
            if p is peer or p.mac == peer.mac:
                del self._list[i]
                return
        raise _idf("NOT_FOUND")

    def _find(self, mac):
        for p in self._list:
            if p.mac == mac:
                return p
        return None

    def __len__(self):
        return len(self._list)

    def __getitem__(self, i):
        return self._list[i]

    def __iter__(self):
        return iter(self._list)

    def __repr__(self):
        return "Peers(%r)" % (self._list,)


class _Core:
    def __init__(self, board, esp):
        self.board = board
        self.esp = esp
        self.radio = airlink.Radio(board, self.sink)
        self.rx = []
        self.rxbytes = 0
        self.pending = []  # sequence numbers of unicast sends awaiting the medium's answer
        self.radio_changed()

    def check(self):
        if self.esp is None:
            raise ValueError(microcontroller._DEINIT_MSG)

    def _wifi(self):
        st = getattr(self.board, "cpy_wifi", None)
        return st if st is not None else {"enabled": True, "station": True, "ap": False}

    def radio_changed(self):
        if self._wifi()["enabled"]:
            if self.radio.on:
                self.radio.refresh()
            else:
                self.radio.start()
        else:
            self.radio.stop()

    def sink(self, src, dst, rssi, flags, tag, payload):
        esp = self.esp
        if esp is None:
            return
        if flags & 1:
            p = esp.peers._find(src)
            if p is None or not p.encrypted or p.lmk is None or \
                    simboard.encryption_tag(esp._pmk, p.lmk) != tag:
                return
        cost = len(payload) + _HEADER
        if self.rxbytes + cost > esp.buffer_size:
            esp._read_failure += 1
            return
        self.rxbytes += cost
        esp._read_success += 1
        self.rx.append(ESPNowPacket(bytes(src), bytes(payload), rssi, _ticks_ms()))

    def pump(self):
        self.radio.poll(0)
        if self.pending:
            keep = []
            for s in self.pending:
                r = self.radio.acks.get(s)
                if r is None:
                    keep.append(s)
                    continue
                del self.radio.acks[s]
                if r:
                    self.esp._send_success += 1
                else:
                    self.esp._send_failure += 1
            self.pending = keep

    def close(self):
        self.radio.close()
        self.esp = None


def _core_of(board):
    return getattr(board, "cpy_espnow", None)


class ESPNow:
    def __init__(self, buffer_size=526, phy_rate=0):
        if not isinstance(buffer_size, int) or buffer_size < 1:
            raise ValueError("buffer_size must be >= 1")
        b = simboard.board()
        if _core_of(b) is not None:
            raise RuntimeError("Already running")
        st = getattr(b, "cpy_wifi", None)
        if st is not None and not st["enabled"]:
            raise RuntimeError("WiFi is not enabled")
        self.buffer_size = buffer_size
        self.phy_rate = phy_rate
        self._pmk = DEFAULT_PMK
        self._send_success = 0
        self._send_failure = 0
        self._read_success = 0
        self._read_failure = 0
        self._core = _Core(b, self)
        self.peers = Peers(self._core)
        b.cpy_espnow = self._core

    def deinit(self):
        c = self._core
        if c is None:
            return
        c.close()
        if getattr(c.board, "cpy_espnow", None) is c:
            c.board.cpy_espnow = None
        self._core = None

    def deinited(self):
        return self._core is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.deinit()

    def _c(self):
        if self._core is None:
            raise ValueError(microcontroller._DEINIT_MSG)
        return self._core

    def set_pmk(self, pmk):
        self._c()
        self._pmk = _bytes(pmk, KEY_LEN, "pmk")

    def send(self, message, peer=None):
        c = self._c()
        if isinstance(message, str):
            message = message.encode()
        msg = bytes(message)
        if not 1 <= len(msg) <= MAX_DATA_LEN:
            raise ValueError("message length must be 1-%d" % MAX_DATA_LEN)
        if peer is None:
            targets = [p for p in self.peers if p.mac != BROADCAST]
            if not targets:
                raise _idf("NOT_FOUND")
        else:
            reg = self.peers._find(bytes(peer.mac))
            if reg is None:
                raise _idf("NOT_FOUND")
            targets = [reg]
        st = c._wifi()
        for p in targets:
            if p.channel not in (0, c.board.channel):
                raise _idf("CHAN")
            up = st["enabled"] and (st["ap"] if p.interface == 1 else st["station"])
            if not up:
                raise _idf("IF")
        for p in targets:
            flags = tag = 0
            if p.encrypted:
                flags = 1
                tag = simboard.encryption_tag(self._pmk, p.lmk)
            seq = c.radio.transmit(p.mac, msg, flags, tag)
            if p.mac == BROADCAST:
                self._send_success += 1
            else:
                c.pending.append(seq)
        c.pump()
        return None

    def read(self):
        c = self._c()
        if not c.rx:
            c.pump()
        if not c.rx:
            return None
        pkt = c.rx.pop(0)
        c.rxbytes -= len(pkt.msg) + _HEADER
        return pkt

    def __len__(self):
        c = self._c()
        c.pump()
        return sum(len(p.msg) + _HEADER for p in c.rx)

    def __bool__(self):
        return len(self) > 0

    @property
    def send_success(self):
        self._c().pump()
        return self._send_success

    @property
    def send_failure(self):
        self._c().pump()
        return self._send_failure

    @property
    def read_success(self):
        return self._read_success

    @property
    def read_failure(self):
        return self._read_failure
