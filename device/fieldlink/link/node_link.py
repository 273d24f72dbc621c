# Node side of the link (NodeLink): scan for the gateway, join, remember it, rescan when lost.
#
# Node: join() scans channels for an open beacon of its network, sends JOIN_REQ, stores
# {gateway, channel, key, sec} in <store>/pair.json. It is "lost" after fail_limit consecutive
# messages without ACK or lost_ms without any frame from the gateway; run() then rescans for the
# same gateway mac on every channel.
import os

from fieldlink.codec import mpack
from fieldlink.link.core import Link, LinkError, _hex, _unhex
from fieldlink.runtime.clock import asleep_ms
from fieldlink.link.frame import T_BEACON, T_JOIN_ACCEPT, T_JOIN_REFUSED, T_JOIN_REQ, build, ticks_diff
from fieldlink.link.pairing import NONCE_LEN, PairingLink, _setch, wrap_key
from fieldlink.link.peers import SEC_ESPNOW, SEC_NONE
from fieldlink.runtime.store import read_json, remove, write_json


def _channel(c):
    """A Wi-Fi channel number as a peer may announce it (beacons, JOIN_ACCEPT): an int 1..14."""
    return type(c) is int and 1 <= c <= 14


class NodeLink(PairingLink):
    """Node role: one gateway, found by scanning, remembered in <store>/pair.json."""

    def __init__(self, esp, mac, channels=None, dwell_ms=250, rescan_dwell_ms=1100, fail_limit=3,
                 lost_ms=30000, want_native=True, join_tries=5, join_retry_ms=300, **kw):
        Link.__init__(self, esp, mac, pairing=self._pairing_frame, alive=self._alive, **kw)
        self.channels = list(channels) if channels is not None else list(range(1, 14))
        self.dwell_ms = dwell_ms
        self.rescan_dwell_ms = rescan_dwell_ms
        self.fail_limit = fail_limit
        self.lost_ms = lost_ms
        self.want_native = want_native
        self.join_tries = join_tries
        self.join_retry_ms = join_retry_ms
        self.gateway = None
        self.channel = None
        self.lost = False
        self._fails = 0
        self._gw_seen = self.clock()
        self._beacon = None
        self._want = None
        self._join = None
        self._reply = None
        saved = read_json(self.store + "/pair.json", "pairing") if self.store is not None else None
        if isinstance(saved, dict) and saved.get("net") == self.net_id:
            key = _unhex(saved["key"]) if saved.get("key") else None
            self._adopt(_unhex(saved["gw"]), saved["ch"], key, saved.get("sec", SEC_NONE))

    @property
    def paired(self):
        return self.gateway is not None

    def _adopt(self, gw, ch, key, sec):
        self.gateway = gw
        self._set_channel(ch)
        p = self.table.add(gw)
        p.key = key
        p.sec = sec
        try:
            self.reg.ensure(gw, key if sec == SEC_ESPNOW else None, True)
        except OSError:
            self.count("send_fail")

    def _set_channel(self, ch):
        self.channel = ch
        _setch(self.wlan, ch)

    def _save_pair(self):
        if self.store is None:
            return
        p = self.table.get(self.gateway)
        write_json(self.store + "/pair.json", {"gw": _hex(self.gateway), "ch": self.channel, "net": self.net_id,
                                              "key": _hex(p.key) if p.key else "", "sec": p.sec})

    def forget(self):
        """Drop the pairing (memory and store)."""
        if self.gateway is not None:
            self.reg.forget(self.gateway)
            self.table.remove(self.gateway)
        self.gateway = None
        if self.store is not None:
            remove(self.store + "/pair.json")

    async def send_gw(self, mtype, obj, ack=True, msgid=0):
        """send() to the paired gateway; LinkError if not paired."""
        if self.gateway is None:
            raise LinkError("not paired")
        return await self.send(self.gateway, mtype, obj, ack, msgid)

    # ------------------------------------------------------------------ frames and timers
    def _pairing_frame(self, src, h, buf, n):
        """The receiver's pairing callback: beacons and join replies."""
        t = h.mtype
        if t == T_JOIN_REQ:
            return
        obj = self._pair_body(h, buf, n)
        if obj is None:
            return
        if t == T_BEACON:
            self.count("beacons_rx")
            if len(obj) < 4 or not _channel(obj[1]):
                self.count("bad_msgpack")
                return
            if src == self.gateway:
                self._seen()
            want = self._want
            if want is not None and ((want == b"open" and obj[3]) or want == src):
                self._beacon = (src, obj[1])
        elif self._join is not None and src == self._join[0] and 1 <= h.msgid <= self._join[2]:
            if (t == T_JOIN_ACCEPT and len(obj) >= 4 and isinstance(obj[1], bytes) and type(obj[2]) is int
                    and _channel(obj[3])):
                self._reply = obj
            elif t == T_JOIN_ACCEPT:
                self.count("bad_msgpack")
            elif t == T_JOIN_REFUSED:
                self.count("join_refused")
                self._reply = obj

    def _seen(self):
        self._gw_seen = self.clock()
        self._fails = 0

    def _alive(self, peer):
        """The receiver's alive callback: any valid frame from the gateway shows it is there."""
        if peer.mac == self.gateway:
            self._seen()

    def _delivered(self, tx, ok):
        if tx.dst != self.gateway:
            return
        if ok:
            self._fails = 0
        else:
            self._fails += 1
            if self._fails >= self.fail_limit:
                self.lost = True

    def _timers(self, now):
        if self.gateway is not None and self.lost_ms and ticks_diff(now, self._gw_seen) > self.lost_ms:
            self.lost = True
        return None

    # ------------------------------------------------------------------------- scanning
    async def _wait(self, ms, done):
        t0 = self.clock()
        while not done():
            left = ms - ticks_diff(self.clock(), t0)
            if left <= 0:
                return False
            w = self.service()
            await asleep_ms(max(1, min(w, self.idle_ms, left)))
        return True

    async def _scan(self, want, dwell, timeout_ms):
        """Hop channels until a wanted beacon arrives; return (gateway mac, its channel) or None."""
        self._want = want
        t0 = self.clock()
        chans = self.channels
        if self.channel in chans:   # current channel first
            chans = [self.channel] + [c for c in chans if c != self.channel]
        try:
            while ticks_diff(self.clock(), t0) < timeout_ms:
                for ch in chans:
                    self._set_channel(ch)
                    self._beacon = None
                    if await self._wait(dwell, lambda: self._beacon is not None):
                        return self._beacon
                    if ticks_diff(self.clock(), t0) >= timeout_ms:
                        break
            return None
        finally:
            self._want = None

    async def join(self, timeout_ms=30000):
        """Find an open gateway of this network and pair with it. True on success, False if refused
        or nothing answered in time. A previous pairing is replaced only on success."""
        t0 = self.clock()
        found = await self._scan(b"open", self.dwell_ms, timeout_ms)
        if found is None:
            return False
        gw, ch = found
        self._set_channel(ch)
        nonce = os.urandom(NONCE_LEN)
        self._reply = None
        try:
            for i in range(self.join_tries):
                if ticks_diff(self.clock(), t0) >= timeout_ms:
                    break
                self._join = (gw, nonce, i + 1)
                body = [self.net_id, nonce, bool(self.want_native)]
                f = build(T_JOIN_REQ, 0, self.boot_id, i + 1, 0, mpack.packb(body), 0, 0, 0, self.pmk)
                self._raw_send(gw, f)
                if await self._wait(self.join_retry_ms, lambda: self._reply is not None):
                    break
        finally:
            self._join = None
        r = self._reply
        if r is None or len(r) < 4:
            return False
        key = wrap_key(self.pmk, self.mac, nonce, r[1]) if (self.pmk is not None and r[1]) else None
        if self.gateway is not None:
            self.forget()
        self.rx.forget_ctr(gw)   # a new key starts a new command counter space
        self._save_ctr()
        self._adopt(gw, r[3], key, r[2] if key is not None else SEC_NONE)
        return self._found()

    async def rescan(self, timeout_ms=60000):
        """Look for the paired gateway on every channel (it may have moved). True if found."""
        if self.gateway is None:
            return False
        self.count("rescans")
        found = await self._scan(self.gateway, self.rescan_dwell_ms, timeout_ms)
        if found is None:
            return False
        self._set_channel(found[1])
        return self._found()

    def _found(self):
        """Paired with the gateway or found it again: remember where it is; it is alive."""
        self._save_pair()
        self.lost = False
        self._seen()
        return True

    async def run(self):
        """Receive/timer loop; rescans for the gateway whenever it is lost."""
        self._running = True
        while self._running:
            if self.lost and self.gateway is not None:
                if not await self.rescan():
                    await asleep_ms(self.idle_ms)
                continue
            await asleep_ms(self._step())
