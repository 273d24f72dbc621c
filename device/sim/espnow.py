# Virtual-board `espnow` module: MicroPython's ESPNow API over the sim air (airlink.py / air.py).
#
# Checked against ports/esp32/modespnow.c + modules/espnow.py and ESP-IDF's esp_now.h: errors are
# OSError(-code, "ESP_ERR_ESPNOW_...") as check_esp_err() raises them (a message over MAX_DATA_LEN or
# empty is ESP_ERR_ESPNOW_ARG from esp_now_send()), ValueError("invalid buffer length") for a MAC or key
# of the wrong size, ValueError("invalid handler") for irq(), OSError(ENOENT) for config(rate=) with no
# WLAN interface active. irq(callback) is scheduled with micropython.schedule() when a frame arrives,
# also while the program busy-loops or sleeps (a watcher thread wakes the main thread, see _Watcher).
# ESP-NOW v1 (250 bytes) unless the board TOML sets espnow_v2 = true (ESP-IDF >= 5.4: 1470 bytes); a
# v1 receiver truncates a longer v2 frame to its first 250 bytes (one of the two behaviours ESP-IDF
# documents). Limits: 20 peers in total, 6 of them encrypted (ESP_NOW_MAX_ENCRYPT_PEER_NUM).
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

try:
    import micropython as _micropython
except ImportError:  # CPython
    _micropython = None
if not hasattr(_micropython, "schedule"):  # CPython (or a stub module): callbacks are called directly
    _micropython = None

MAX_DATA_LEN_V1 = const(250)
MAX_DATA_LEN_V2 = const(1470)
# like the firmware, a module constant: the ESP-NOW version of the board selected at import
MAX_DATA_LEN = MAX_DATA_LEN_V2 if simboard.board().espnow_v2 else MAX_DATA_LEN_V1
KEY_LEN = const(16)
ADDR_LEN = const(6)
MAX_TOTAL_PEER_NUM = const(20)
MAX_ENCRYPT_PEER_NUM = const(6)
# wifi_phy_rate_t values (esp_wifi_types_generic.h) as the port exports them
RATE_1M = const(0x00)
RATE_2M = const(0x01)
RATE_5M = const(0x02)
RATE_11M = const(0x03)
RATE_6M = const(0x0B)
RATE_12M = const(0x0A)
RATE_24M = const(0x09)
RATE_54M = const(0x0C)
RATE_LORA_250K = const(0x29)
RATE_LORA_500K = const(0x2A)
_RATES = (RATE_1M, RATE_2M, RATE_5M, RATE_11M, RATE_6M, RATE_12M, RATE_24M, RATE_54M, RATE_LORA_250K,
          RATE_LORA_500K)

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
# espnow_pkt_t in modespnow.c: packed header (magic u8, msg_len u16, time_ms u32, rssi i8) + peer[6]
_RX_OVERHEAD = 14


def _err(code):
    return OSError(-code, _NAMES[code])


def _buf(obj):
    """mp_get_buffer_raise(): bytes, bytearray, memoryview, str (its UTF-8 bytes), array."""
    if isinstance(obj, str):
        return obj.encode()
    try:
        return bytes(memoryview(obj))
    except TypeError:
        raise TypeError("object with buffer protocol required")


def _mac(mac):
    b = _buf(mac)
    if len(b) != ADDR_LEN:
        raise ValueError("invalid buffer length")
    return b


def _key(k, what=None):
    b = _buf(k)
    if len(b) != KEY_LEN:
        raise ValueError("invalid buffer length")
    return b


_ZERO_KEY = b"\x00" * KEY_LEN


def _max_len(board):
    return MAX_DATA_LEN_V2 if board.espnow_v2 else MAX_DATA_LEN_V1


def _ticks_ms():
    return airlink._ticks_ms()


class _Watcher:
    """Wakes the main thread when a datagram is waiting on the board's air socket, so irq() callbacks
    run while the program does something else (busy loop, time.sleep_ms, asyncio sleeps): the thread
    only polls the socket (MicroPython's unix port has no GIL, so it touches no shared state) and
    micropython.schedule()s _Core.irq_pump, which reads and delivers on the main thread."""

    def __init__(self, core):
        import select
        self.core = core
        self.gen = core.watch_gen
        self.pending = False
        self.poller = select.poll()
        self.poller.register(core.radio.sock, select.POLLIN)

    def run(self):
        c = self.core
        while c.watch_gen == self.gen:
            if self.pending:
                airlink._sleep_ms(2)
                continue
            try:
                ready = self.poller.poll(50)
            except OSError:
                return
            if ready and c.watch_gen == self.gen:
                self.pending = True
                try:
                    _micropython.schedule(c.irq_pump, self)
                except RuntimeError:  # schedule queue full: try again shortly
                    self.pending = False
                    airlink._sleep_ms(5)


class _Core:
    """Per-board ESP-NOW state (MicroPython's ESPNow is a singleton per chip)."""

    def __init__(self, board):
        self.board = board
        self.active = False
        self.radio = None
        self.peers = {}  # mac -> [lmk or None, channel, ifidx, encrypt]
        self.order = []
        self.pmk = DEFAULT_PMK
        # DEFAULT_RECV_BUFFER_SIZE = 2 * (14 + max data len): 528 (v1), 2968 (v2); config(rxbuf=) is
        # used by the next active(True), as on the port
        self.rxbuf_size = 2 * (_RX_OVERHEAD + (MAX_DATA_LEN_V2 if board.espnow_v2 else MAX_DATA_LEN_V1))
        self.rxbuf = self.rxbuf_size
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
        self.irq_arg = None
        self.watch_gen = 0
        self.rooms = {}
        self.data = [None, bytearray(MAX_DATA_LEN_V2 if board.espnow_v2 else MAX_DATA_LEN_V1)]

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
            if peer is None or not peer[3] or simboard.encryption_tag(self.pmk, peer[0] or _ZERO_KEY) != tag:
                return  # cannot decrypt: the ESP-NOW layer drops it silently
        if len(payload) > MAX_DATA_LEN_V1 and not self.board.espnow_v2:
            payload = payload[:MAX_DATA_LEN_V1]  # a v1 receiver keeps the first 250 bytes of a v2 frame
        cost = len(payload) + _RX_OVERHEAD
        # recv_cb(): dropped if sizeof(espnow_pkt_t) + len >= ringbuf_free(), and a ring buffer of size N
        # holds N - 1 bytes (so the default 528 holds one full 250-byte frame, not two)
        if cost >= self.rxbuf - 1 - self.rxbytes:
            self.rx_dropped += 1
            return
        self.rxbytes += cost
        self.rx_packets += 1
        self.rxq.append((src, payload, rssi, _ticks_ms()))
        if self.irq_cb is not None:
            if _micropython is not None:
                try:
                    _micropython.schedule(self.irq_cb, self.irq_arg)
                except RuntimeError:
                    pass  # queue full: mp_sched_schedule() fails silently on the port too
            else:
                self.irq_cb(self.irq_arg)

    def pump(self, timeout_ms=0, max_frames=None):
        if self.radio is not None:
            self.radio.poll(timeout_ms, max_frames)
            if self.async_seqs:
                self._collect_async()

    def irq_pump(self, watcher):
        """Scheduled by the watcher thread: take what the air has (callbacks are scheduled by sink)."""
        try:
            self.pump(0)
        finally:
            watcher.pending = False

    def watch(self):
        """(Re)start or stop the watcher thread for irq() on the UDP air."""
        self.watch_gen += 1
        if self.irq_cb is None or not self.active or _micropython is None:
            return
        if self.radio is None or self.radio.sock is None:
            return  # loopback medium: frames arrive synchronously, sink schedules the callback
        try:
            import _thread
        except ImportError:
            return
        w = _Watcher(self)
        _thread.start_new_thread(w.run, ())

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
                self.tx_responses += 1
                self.tx_failures += 1
        self.async_seqs = keep

    def pop(self):
        src, payload, rssi, t = self.rxq.pop(0)
        self.rxbytes -= len(payload) + _RX_OVERHEAD
        self.peers_table[src] = [rssi, t]  # recvinto() updates peers_table, as the port does
        return src, payload, rssi, t


def _core():
    b = simboard.board()
    if b.espnow is None:
        b.espnow = _Core(b)
    return b.espnow


class ESPNow:
    """ESPNow() returns a handle on the selected board's (singleton) ESP-NOW state."""

    _none_tuple = (None, None)

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
            c.rxbuf = c.rxbuf_size & 0xFFFF  # ringbuf_t.size is a uint16_t
            if c.radio is None:
                c.radio = airlink.Radio(c.board, c.sink)
            c.wlan_changed()
            c.watch()
        elif not flag and c.active:
            c.watch_gen += 1
            if c.radio is not None:
                c.radio.close()
                c.radio = None
            c.active = False
            c.peers = {}
            c.order = []
            c.rxq = []
            c.rxbytes = 0
            c.irq_cb = None
            c.irq_arg = None
            c.tx_pkts = c.tx_responses
        return c.active

    def config(self, *args, rxbuf=-1, timeout_ms=None, rate=-1):
        c = self._c
        if len(args) > 1:
            raise TypeError("function takes at most 2 positional arguments")
        if rxbuf is None or timeout_ms is not None and not isinstance(timeout_ms, int):
            raise TypeError("can't convert to int")
        if rxbuf >= 0:
            c.rxbuf_size = rxbuf
        if timeout_ms is not None:
            c.timeout_ms = timeout_ms
        if rate is not None and rate >= 0:
            w = c.board.wlan
            if not any(st is not None and st["active"] for st in w):
                raise OSError(2)  # get_wifi_mode(): WiFi not started -> MP_ENOENT
            c.rate = rate
        if not args:
            return None
        p = args[0]
        if p == "rxbuf":
            return c.rxbuf_size
        if p == "timeout_ms":
            return c.timeout_ms
        raise ValueError("unknown config param")

    def set_pmk(self, pmk):
        c = self._need_active()
        c.pmk = _key(pmk)

    # -- peers --
    def _peer_info(self, p, lmk, channel, ifidx, encrypt):
        """_update_peer_info(): a true lmk sets encrypt and the key; encrypt= overrides."""
        if lmk is not None:
            if lmk:
                p[0] = _key(lmk)
                p[3] = True
            else:
                p[3] = False
        if channel is not None:
            p[1] = int(channel)
        if ifidx is not None:
            p[2] = int(ifidx)
        if encrypt is not None:
            p[3] = bool(encrypt)
        return p

    def _check_peer(self, mac, p):
        """esp_now_add_peer()/mod_peer() argument checks."""
        if not 0 <= p[1] <= 14 or p[2] not in (0, 1):
            raise _err(ESP_ERR_ESPNOW_ARG)
        if p[3] and mac == BROADCAST:
            raise _err(ESP_ERR_ESPNOW_ARG)

    def add_peer(self, mac, lmk=None, channel=None, ifidx=None, encrypt=None):
        mac = _mac(mac)
        p = self._peer_info([None, 0, 0, False], lmk, channel, ifidx, encrypt)
        c = self._need_active()
        self._check_peer(mac, p)
        if mac in c.peers:
            raise _err(ESP_ERR_ESPNOW_EXIST)
        total, enc = self.peer_count()
        if total >= MAX_TOTAL_PEER_NUM or (p[3] and enc >= MAX_ENCRYPT_PEER_NUM):
            raise _err(ESP_ERR_ESPNOW_FULL)
        c.peers[mac] = p
        c.order.append(mac)

    def mod_peer(self, mac, lmk=None, channel=None, ifidx=None, encrypt=None):
        mac = _mac(mac)
        c = self._need_active()
        old = c.peers.get(mac)
        if old is None:
            raise _err(ESP_ERR_ESPNOW_NOT_FOUND)
        p = self._peer_info(list(old), lmk, channel, ifidx, encrypt)
        self._check_peer(mac, p)
        if p[3] and not old[3] and self.peer_count()[1] >= MAX_ENCRYPT_PEER_NUM:
            raise _err(ESP_ERR_ESPNOW_FULL)
        c.peers[mac] = p

    def del_peer(self, mac):
        mac = _mac(mac)
        c = self._need_active()
        if mac not in c.peers:
            raise _err(ESP_ERR_ESPNOW_NOT_FOUND)
        del c.peers[mac]
        c.order.remove(mac)

    @staticmethod
    def _tuple(mac, p):
        return (mac, p[0] or _ZERO_KEY, p[1], p[2], p[3])

    def get_peer(self, mac):
        mac = _mac(mac)
        c = self._need_active()
        p = c.peers.get(mac)
        if p is None:
            raise _err(ESP_ERR_ESPNOW_NOT_FOUND)
        return self._tuple(mac, p)

    def get_peers(self):
        c = self._need_active()
        return tuple(self._tuple(m, c.peers[m]) for m in c.order)

    def peer_count(self):
        c = self._need_active()
        return (len(c.peers), sum(1 for p in c.peers.values() if p[3]))

    @property
    def peers_table(self):
        return self._c.peers_table

    # -- send / receive --
    def send(self, mac, msg=None, sync=None):
        c = self._need_active()
        if msg is None:  # send(msg): to all peers
            mac, msg = None, mac
        sync = sync is None or bool(sync)
        seqs = self._tx(mac, msg)
        if not sync:
            c.async_seqs.extend(seqs)
            c.pump(0)
            return True
        results = c.radio.wait_acks(seqs) if seqs else []
        ok = True
        for r in results:
            c.tx_responses += 1
            if not r:
                c.tx_failures += 1
                ok = False
        return ok

    def _tx(self, mac, msg):
        """esp_now_send(): validate and put the frame(s) on the air; returns the sequence numbers
        awaiting an ack."""
        c = self._need_active()
        peer = None if mac is None else _mac(mac)
        msg = _buf(msg)
        if not msg or len(msg) > _max_len(c.board):
            raise _err(ESP_ERR_ESPNOW_ARG)
        if peer is None:  # all registered peers except broadcast/multicast addresses
            targets = [m for m in c.order if not m[0] & 1]
            if not targets:
                raise _err(ESP_ERR_ESPNOW_NOT_FOUND)
        else:
            targets = [peer]
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
                tag = simboard.encryption_tag(c.pmk, p[0] or _ZERO_KEY)
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
            c.pump(0, 1)
        return len(c.rxq) > 0

    def _wait(self, timeout_ms):
        c = self._need_active()
        if c.rxq:
            return True
        c.pump(0, 1)
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
                c.pump(min(left, 100), 1)
            else:
                airlink._sleep_ms(min(left, 5))
                c.pump(0, 1)
        return True

    def recvinto(self, data, timeout_ms=None):
        """data = [peer, bytearray(MAX_DATA_LEN)] (+ [rssi, time_ms] if 4 long): fills it, returns the
        message length; 0 on timeout."""
        if not self._wait(timeout_ms):
            return 0
        if not isinstance(data, list) or len(data) < 2:
            raise ValueError("invalid buffer length")
        c = self._c
        msg_buf = data[1]
        src, payload, rssi, t = c.rxq[0]
        if isinstance(msg_buf, bytearray):
            # the port gives a bytearray back the room it had before an earlier, shorter message
            key = id(msg_buf)
            room = max(len(msg_buf), c.rooms.get(key, 0))
            c.rooms[key] = room
        else:
            room = len(memoryview(msg_buf))
        if len(payload) > room:
            c.rxq = []  # ringbuf_reset(): the port drops everything buffered
            c.rxbytes = 0
            raise ValueError("ESPNow.recv(): buffer error")
        c.pop()
        if isinstance(msg_buf, bytearray):
            msg_buf[:] = payload
        else:
            memoryview(msg_buf)[:len(payload)] = payload
        data[0] = src  # (the port puts the peers_table key object there; equal bytes here)
        if len(data) >= 4:
            data[2] = rssi
            data[3] = t
        return len(payload)

    def irecv(self, timeout_ms=None):
        n = self.recvinto(self._c.data, timeout_ms)
        return self._c.data if n else self._none_tuple

    def recv(self, timeout_ms=None):
        n = self.recvinto(self._c.data, timeout_ms)
        return [bytes(x) for x in self._c.data] if n else self._none_tuple

    def stats(self):
        c = self._c
        if c.async_seqs:
            c.pump(0)
        return (c.tx_pkts, c.tx_responses, c.tx_failures, c.rx_packets, c.rx_dropped)

    def irq(self, callback):
        """callback(espnow) is micropython.schedule()d when a frame arrives (espnow.py passes self)."""
        if callback is not None and not callable(callback):
            raise ValueError("invalid handler")
        c = self._c
        c.irq_cb = callback
        c.irq_arg = self
        c.watch()

    def __iter__(self):
        return self

    def __next__(self):
        return self.irecv()
