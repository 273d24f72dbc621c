# Virtual-board `espnow` module: MicroPython's ESPNow API over the sim air (airlink.py / air.py).
#
# Errors are the ones MicroPython raises on the ESP32: OSError(-code, "ESP_ERR_ESPNOW_...") from
# check_esp_err(), ValueError for a message over 250 bytes or malformed MAC/keys.
# Limits: 20 peers in total, 6 of them encrypted (ESP_NOW_MAX_ENCRYPT_PEER_NUM).
# Encryption is modelled with a tag: a frame to an encrypted peer carries a hash of (PMK, LMK); the
# receiver keeps it only if it has the sender registered as an encrypted peer with the same LMK and its
# own PMK is the same. Unencrypted frames are always received. The MAC-level ack does not depend on it.
import airlink
import simboard

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

MAX_DATA_LEN = const(250)
KEY_LEN = const(16)
ADDR_LEN = const(6)
MAX_TOTAL_PEER_NUM = const(20)
MAX_ENCRYPT_PEER_NUM = const(6)

ESP_ERR_ESPNOW_BASE = 0x3000 + 100
ESP_ERR_ESPNOW_NOT_INIT = ESP_ERR_ESPNOW_BASE + 1
ESP_ERR_ESPNOW_ARG = ESP_ERR_ESPNOW_BASE + 2
ESP_ERR_ESPNOW_NO_MEM = ESP_ERR_ESPNOW_BASE + 3
ESP_ERR_ESPNOW_FULL = ESP_ERR_ESPNOW_BASE + 4
ESP_ERR_ESPNOW_NOT_FOUND = ESP_ERR_ESPNOW_BASE + 5
ESP_ERR_ESPNOW_INTERNAL = ESP_ERR_ESPNOW_BASE + 6
ESP_ERR_ESPNOW_EXIST = ESP_ERR_ESPNOW_BASE + 7
ESP_ERR_ESPNOW_IF = ESP_ERR_ESPNOW_BASE + 8
ESP_ERR_ESPNOW_CHAN = ESP_ERR_ESPNOW_BASE + 9
_NAMES = {ESP_ERR_ESPNOW_NOT_INIT: "ESP_ERR_ESPNOW_NOT_INIT", ESP_ERR_ESPNOW_ARG: "ESP_ERR_ESPNOW_ARG",
          ESP_ERR_ESPNOW_NO_MEM: "ESP_ERR_ESPNOW_NO_MEM", ESP_ERR_ESPNOW_FULL: "ESP_ERR_ESPNOW_FULL",
          ESP_ERR_ESPNOW_NOT_FOUND: "ESP_ERR_ESPNOW_NOT_FOUND", ESP_ERR_ESPNOW_INTERNAL: "ESP_ERR_ESPNOW_INTERNAL",
          ESP_ERR_ESPNOW_EXIST: "ESP_ERR_ESPNOW_EXIST", ESP_ERR_ESPNOW_IF: "ESP_ERR_ESPNOW_IF",
          ESP_ERR_ESPNOW_CHAN: "ESP_ERR_ESPNOW_CHAN"}

BROADCAST = b"\xff" * 6
DEFAULT_PMK = b"pmk1234567890123"
_RX_OVERHEAD = 13  # bytes of ring-buffer header per packet: 2 x (250 + 13) = 526 = default rxbuf


def _err(code):
    return OSError(-code, _NAMES[code])


def _mac(mac):
    if not isinstance(mac, (bytes, bytearray)) or len(mac) != ADDR_LEN:
        raise ValueError("invalid MAC address")
    return bytes(mac)


def _key(k, what):
    if k is None:
        return None
    if isinstance(k, str):
        k = k.encode()
    k = bytes(k)
    if len(k) != KEY_LEN:
        raise ValueError("%s must be 16 bytes" % what)
    return k


def _ticks_ms():
    return airlink._ticks_ms()


class _Core:
    """Per-board ESP-NOW state (MicroPython's ESPNow is a singleton per chip)."""

    def __init__(self, board):
        self.board = board
        self.active = False
        self.radio = None
        self.peers = {}  # mac -> [lmk, channel, ifidx, encrypt]
        self.order = []
        self.pmk = DEFAULT_PMK
        self.rxbuf = 526
        self.timeout_ms = 300000
        self.rate = None
        self.rxq = []
        self.rxbytes = 0
        self.peers_table = {}
        self.tx_pkts = 0
        self.tx_responses = 0
        self.tx_failures = 0
        self.rx_packets = 0
        self.rx_dropped = 0
        self.async_seqs = []
        self.irq_cb = None

    # -- radio --
    def _on_air(self):
        w = self.board.wlan
        return self.active and any(st is not None and st["active"] for st in w)

    def wlan_changed(self):
        if self.radio is None:
            return
        if self._on_air():
            if self.radio.on:
                self.radio.refresh()
            else:
                self.radio.start()
        else:
            self.radio.stop()

    def sink(self, src, dst, rssi, flags, tag, payload):
        if flags & 1:
            peer = self.peers.get(src)
            if peer is None or not peer[3] or peer[0] is None or \
                    simboard.encryption_tag(self.pmk, peer[0]) != tag:
                return  # cannot decrypt: the ESP-NOW layer drops it silently
        cost = len(payload) + _RX_OVERHEAD
        if self.rxbytes + cost > self.rxbuf:
            self.rx_dropped += 1
            return
        self.rxbytes += cost
        self.rx_packets += 1
        now = _ticks_ms()
        self.rxq.append((src, payload))
        self.peers_table[src] = [rssi, now]
        if self.irq_cb is not None:
            self.irq_cb(ESPNow())

    def pump(self, timeout_ms=0):
        if self.radio is not None:
            self.radio.poll(timeout_ms)
            if self.async_seqs:
                self._collect_async()

    def _collect_async(self):
        keep = []
        for s in self.async_seqs:
            r = self.radio.acks.get(s)
            if r is None:
                keep.append(s)
                continue
            del self.radio.acks[s]
            if r:
                self.tx_responses += 1
            else:
                self.tx_failures += 1
        self.async_seqs = keep

    def pop(self):
        src, payload = self.rxq.pop(0)
        self.rxbytes -= len(payload) + _RX_OVERHEAD
        return src, payload


def _core():
    b = simboard.board()
    if b.espnow is None:
        b.espnow = _Core(b)
    return b.espnow


class ESPNow:
    """ESPNow() returns a handle on the selected board's (singleton) ESP-NOW state."""

    def __init__(self):
        self._c = _core()

    def _need_active(self):
        if not self._c.active:
            raise _err(ESP_ERR_ESPNOW_NOT_INIT)
        return self._c

    def active(self, flag=None):
        c = self._c
        if flag is None:
            return c.active
        if flag and not c.active:
            c.active = True
            if c.radio is None:
                c.radio = airlink.Radio(c.board, c.sink)
            c.wlan_changed()
        elif not flag and c.active:
            if c.radio is not None:
                c.radio.close()
                c.radio = None
            c.active = False
            c.peers = {}
            c.order = []
            c.rxq = []
            c.rxbytes = 0
        return c.active

    def config(self, *args, rxbuf=None, timeout_ms=None, rate=None, pmk=None):
        c = self._c
        if args:
            if len(args) != 1:
                raise TypeError("can query only one param")
            p = args[0]
            if p == "rxbuf":
                return c.rxbuf
            if p == "timeout_ms":
                return c.timeout_ms
            if p == "rate":
                return c.rate
            raise ValueError("unknown config param")
        if rxbuf is not None:
            if not isinstance(rxbuf, int) or rxbuf < 1:
                raise ValueError("rxbuf must be > 0")
            c.rxbuf = rxbuf
        if timeout_ms is not None:
            c.timeout_ms = int(timeout_ms)
        if rate is not None:
            self._need_active()
            c.rate = rate
        if pmk is not None:
            self.set_pmk(pmk)
        return None

    def set_pmk(self, pmk):
        c = self._need_active()
        c.pmk = _key(pmk, "pmk")

    # -- peers --
    def add_peer(self, mac, lmk=None, channel=0, ifidx=0, encrypt=None):
        c = self._need_active()
        mac = _mac(mac)
        lmk = _key(lmk, "lmk")
        if encrypt is None:
            encrypt = lmk is not None
        encrypt = bool(encrypt)
        if not isinstance(channel, int) or not 0 <= channel <= 14 or ifidx not in (0, 1):
            raise _err(ESP_ERR_ESPNOW_ARG)
        if encrypt and (mac == BROADCAST or lmk is None):
            raise _err(ESP_ERR_ESPNOW_ARG)
        if mac in c.peers:
            raise _err(ESP_ERR_ESPNOW_EXIST)
        total, enc = self.peer_count()
        if total >= MAX_TOTAL_PEER_NUM or (encrypt and enc >= MAX_ENCRYPT_PEER_NUM):
            raise _err(ESP_ERR_ESPNOW_FULL)
        c.peers[mac] = [lmk, channel, ifidx, encrypt]
        c.order.append(mac)

    def mod_peer(self, mac, lmk=None, channel=None, ifidx=None, encrypt=None):
        c = self._need_active()
        mac = _mac(mac)
        p = c.peers.get(mac)
        if p is None:
            raise _err(ESP_ERR_ESPNOW_NOT_FOUND)
        new = list(p)
        if lmk is not None:
            new[0] = _key(lmk, "lmk")
            if encrypt is None:
                encrypt = True
        if channel is not None:
            if not isinstance(channel, int) or not 0 <= channel <= 14:
                raise _err(ESP_ERR_ESPNOW_ARG)
            new[1] = channel
        if ifidx is not None:
            if ifidx not in (0, 1):
                raise _err(ESP_ERR_ESPNOW_ARG)
            new[2] = ifidx
        if encrypt is not None:
            new[3] = bool(encrypt)
        if new[3] and (new[0] is None or mac == BROADCAST):
            raise _err(ESP_ERR_ESPNOW_ARG)
        if new[3] and not p[3] and self.peer_count()[1] >= MAX_ENCRYPT_PEER_NUM:
            raise _err(ESP_ERR_ESPNOW_FULL)
        c.peers[mac] = new

    def del_peer(self, mac):
        c = self._need_active()
        mac = _mac(mac)
        if mac not in c.peers:
            raise _err(ESP_ERR_ESPNOW_NOT_FOUND)
        del c.peers[mac]
        c.order.remove(mac)

    def get_peer(self, mac):
        c = self._need_active()
        mac = _mac(mac)
        p = c.peers.get(mac)
        if p is None:
            raise _err(ESP_ERR_ESPNOW_NOT_FOUND)
        return (mac, p[0], p[1], p[2], p[3])

    def get_peers(self):
        c = self._need_active()
        return tuple((m,) + tuple(c.peers[m]) for m in c.order)

    def peer_count(self):
        c = self._need_active()
        return (len(c.peers), sum(1 for p in c.peers.values() if p[3]))

    @property
    def peers_table(self):
        return self._c.peers_table

    # -- send / receive --
    def send(self, mac, msg=None, sync=True):
        if msg is None:  # send(msg): to all peers
            mac, msg = None, mac
        c = self._c
        seqs = self._tx(mac, msg)
        if not sync:
            c.async_seqs.extend(seqs)
            c.pump(0)
            return True
        results = c.radio.wait_acks(seqs) if seqs else []
        ok = True
        for r in results:
            if r:
                c.tx_responses += 1
            else:
                c.tx_failures += 1
                ok = False
        return ok

    def _tx(self, mac, msg):
        """Validate and put the frame(s) on the air; returns the sequence numbers awaiting an ack."""
        c = self._need_active()
        if isinstance(msg, str):
            msg = msg.encode()
        msg = bytes(msg)
        if len(msg) > MAX_DATA_LEN:
            raise ValueError("msg too long")
        if not msg:
            raise _err(ESP_ERR_ESPNOW_ARG)
        if mac is None:
            targets = list(c.order)
            if not targets:
                raise _err(ESP_ERR_ESPNOW_NOT_FOUND)
        else:
            targets = [_mac(mac)]
        plan = []
        for m in targets:
            p = c.peers.get(m)
            if p is None:
                raise _err(ESP_ERR_ESPNOW_NOT_FOUND)
            if p[1] not in (0, c.board.channel):
                raise _err(ESP_ERR_ESPNOW_CHAN)
            st = c.board.wlan[p[2]]
            if st is None or not st["active"]:
                raise _err(ESP_ERR_ESPNOW_IF)
            plan.append((m, p))
        radio = c.radio
        seqs = []
        for m, p in plan:
            flags = 0
            tag = 0
            if p[3]:
                flags = 1
                tag = simboard.encryption_tag(c.pmk, p[0])
            c.tx_pkts += 1
            seq = radio.transmit(m, msg, flags, tag)
            if m == BROADCAST:
                c.tx_responses += 1
            else:
                seqs.append(seq)
        return seqs

    def _timeout(self, timeout_ms):
        return self._c.timeout_ms if timeout_ms is None else timeout_ms

    def any(self):
        c = self._need_active()
        if not c.rxq:
            c.pump(0)
        return len(c.rxq) > 0

    def _wait(self, timeout_ms):
        c = self._need_active()
        if c.rxq:
            return True
        c.pump(0)
        t = self._timeout(timeout_ms)
        if c.rxq or t == 0:
            return bool(c.rxq)
        start = _ticks_ms()
        while not c.rxq:
            if t > 0:
                left = t - airlink._ticks_diff(_ticks_ms(), start)
                if left <= 0:
                    return False
            else:
                left = 100
            if c.radio is not None and c.radio.sock is not None:
                c.pump(min(left, 100))
            else:
                airlink._sleep_ms(min(left, 5))
                c.pump(0)
        return True

    def recv(self, timeout_ms=None):
        if not self._wait(timeout_ms):
            return [None, None]
        mac, msg = self._c.pop()
        return [mac, msg]

    def irecv(self, timeout_ms=None):
        r = self.recv(timeout_ms)
        if r[0] is None:
            return r
        return [bytearray(r[0]), bytearray(r[1])]

    def recvinto(self, data, timeout_ms=None):
        """data = [bytearray(6), bytearray(250), ...]; returns the message length (0 on timeout)."""
        r = self.recv(timeout_ms)
        if r[0] is None:
            return 0
        data[0][:] = r[0]
        data[1][:] = r[1]
        return len(r[1])

    def stats(self):
        c = self._c
        if c.async_seqs:
            c.pump(0)
        return (c.tx_pkts, c.tx_responses, c.tx_failures, c.rx_packets, c.rx_dropped)

    def irq(self, callback):
        """callback(espnow) is called when frames are taken from the air; the sim only takes them when
        the application calls any()/recv()/send() or awaits AIOESPNow, so prefer those."""
        if callback is not None and not callable(callback):
            raise TypeError("callback must be callable")
        self._c.irq_cb = callback

    def __iter__(self):
        return self

    def __next__(self):
        return self.irecv()
