# Pairing and the two link roles.
#
# Gateway: permit_join(seconds) opens a window; beacons [net_id, channel, gateway mac, open] go to
# broadcast every beacon_open_ms while it is open and every beacon_closed_ms otherwise (so a node that
# lost its gateway finds the new channel). JOIN_REQ inside the window -> JOIN_ACCEPT with a fresh
# 16-byte LMK wrapped with the network PMK; outside it -> JOIN_REFUSED.
# Node: join() scans channels for an open beacon of its network, sends JOIN_REQ, stores
# {gateway, channel, key, sec} in <store>/pair.json. It is "lost" after fail_limit consecutive
# messages without ACK or lost_ms without any frame from the gateway; run() then rescans for the
# same gateway mac on every channel.
import hashlib
import os

from fieldlink import mpack
import sys

from fieldlink.link import BROADCAST, Link, LinkError, _hex, _unhex, sleep_ms
from fieldlink.linkframe import (
    F_AUTH, T_BEACON, T_JOIN_ACCEPT, T_JOIN_REFUSED, T_JOIN_REQ, build, check_tag, ticks_add, ticks_diff,
)
from fieldlink.peers import SEC_AUTH, SEC_ESPNOW, SEC_NONE, load_json, save_json

KEY_LEN = 16
NONCE_LEN = 8


def wrap_key(pmk, node_mac, nonce, key):
    """LMK XOR SHA256(pmk || node mac || nonce)[:16]; the same call unwraps."""
    ks = hashlib.sha256(bytes(pmk) + bytes(node_mac) + bytes(nonce)).digest()
    return bytes(key[i] ^ ks[i] for i in range(KEY_LEN))


def _setch(wlan, ch):
    if wlan is not None:
        wlan.config(channel=ch)


class _Role(Link):
    def _pair_body(self, h, buf, n):
        """Verify the PMK tag (secured network) and decode a pairing frame body; None if invalid."""
        if self.pmk is not None:
            if not (h.flags & F_AUTH) or not check_tag(self.pmk, buf, n):
                self.count("bad_auth")
                return None
        try:
            obj = mpack.unpackb(memoryview(buf)[h.body:h.end])
        except ValueError:
            self.count("bad_msgpack")
            return None
        if not isinstance(obj, list) or len(obj) < 2 or obj[0] != self.net_id:
            self.count("wrong_net")
            return None
        return obj

    def _pair_send(self, dst, mtype, msgid, obj):
        f = build(mtype, 0, self.boot_id, 0, msgid, mpack.packb(obj), 0, 0, 0, self.pmk)
        return self._raw_send(dst, f)


class GatewayLink(_Role):
    """Gateway role: pairing window, beacons, one ESP-NOW registration per active node (LRU)."""

    def __init__(self, esp, mac, channel=1, beacon_open_ms=200, beacon_closed_ms=1000, **kw):
        Link.__init__(self, esp, mac, **kw)
        self.channel = channel
        _setch(self.wlan, channel)
        self.beacon_open_ms = beacon_open_ms
        self.beacon_closed_ms = beacon_closed_ms
        self.on_join = None
        self._join_until = None
        self._next_beacon = self.clock()
        self._nonce = {}
        self.paired = {}   # mac -> sec
        saved = load_json(self.store + "/nodes.json") if self.store is not None else None
        if isinstance(saved, dict):
            for h, v in saved.items():
                self.add_node(_unhex(h), _unhex(v[0]) if v[0] else None, v[1], False)

    def add_node(self, mac, key=None, sec=SEC_AUTH, save=True):
        """Register a paired node (join does this; also for provisioning keys from the host).
        A natively encrypted node (SEC_ESPNOW) gets a pinned encrypted registration at once: without
        it the radio could not decrypt anything the node sends. Returns the Peer or None (table full)."""
        mac = bytes(mac)
        p = self.table.add(mac)
        if p is None:
            self.count("table_full")
            return None
        if key is None:
            sec = SEC_NONE
        p.key = key
        p.sec = sec
        self.paired[mac] = sec
        if sec == SEC_ESPNOW:
            try:
                self.reg.ensure(mac, key, True)
            except OSError:
                self.count("send_fail")
        if save:
            self._save_nodes()
        return p

    def permit_join(self, seconds):
        """Accept JOIN_REQs for the next `seconds` (0 closes the window) and beacon fast."""
        now = self.clock()
        self._join_until = ticks_add(now, int(seconds * 1000)) if seconds > 0 else None
        self._next_beacon = now

    def join_open(self):
        if self._join_until is None:
            return False
        if ticks_diff(self._join_until, self.clock()) <= 0:
            self._join_until = None
            return False
        return True

    def set_channel(self, ch):
        """Move the gateway to another channel (nodes find it again by rescanning)."""
        self.channel = ch
        _setch(self.wlan, ch)
        self._next_beacon = self.clock()

    def nodes(self):
        return list(self.paired)

    def node(self, mac):
        p = self.table.get(bytes(mac))
        if p is None:
            return None
        return {"sec": p.sec, "paired": p.mac in self.paired, "last_rx": p.last_rx, "ctr_tx": p.ctr_tx,
                "registered": p.mac in self.reg.reg, "inflight": p.inflight}

    def forget(self, mac):
        mac = bytes(mac)
        self.table.remove(mac)
        self.reg.forget(mac)
        self.paired.pop(mac, None)
        self._save_nodes()

    def _save_nodes(self):
        if self.store is None:
            return
        d = {}
        for mac, sec in self.paired.items():
            p = self.table.get(mac)
            d[_hex(mac)] = [_hex(p.key) if p is not None and p.key else "", sec]
        save_json(self.store + "/nodes.json", d)

    def _n_native(self):
        n = 0
        for sec in self.paired.values():
            if sec == SEC_ESPNOW:
                n += 1
        return n

    def _pairing_frame(self, src, h, buf, n):
        if h.mtype != T_JOIN_REQ:
            return   # other gateways' beacons, stray join replies: not for us
        obj = self._pair_body(h, buf, n)
        if obj is None:
            return
        if len(obj) < 3 or not isinstance(obj[1], bytes) or len(obj[1]) != NONCE_LEN:
            self.count("bad_msgpack")
            return
        if not self.join_open():
            self.count("join_refused")
            self._pair_send(src, T_JOIN_REFUSED, h.seq, [self.net_id, "closed"])
            return
        p = self.table.add(src)
        if p is None:
            self.count("table_full")
            self._pair_send(src, T_JOIN_REFUSED, h.seq, [self.net_id, "full"])
            return
        nonce = obj[1]
        new = src not in self.paired
        if self._nonce.get(src) != nonce:   # a retried JOIN_REQ gets the same answer again
            self._nonce[src] = nonce
            if self.pmk is None:
                key, sec = None, SEC_NONE
            else:
                key = os.urandom(KEY_LEN)
                native = p.sec == SEC_ESPNOW or self._n_native() < self.reg.max_encrypted
                sec = SEC_ESPNOW if (obj[2] and native) else SEC_AUTH
            self.add_node(src, key, sec)
        wrapped = wrap_key(self.pmk, src, nonce, p.key) if p.key else b""
        self.reg.forget(src)   # the accept goes out unencrypted: the node has no key yet
        self._pair_send(src, T_JOIN_ACCEPT, h.seq, [self.net_id, wrapped, p.sec, self.channel])
        if p.sec == SEC_ESPNOW:
            try:
                self.reg.ensure(src, p.key, True)
            except OSError:
                self.count("send_fail")
        self.count("join_accepted")
        if new and self.on_join is not None:
            self.on_join(src)

    def _timers(self, now):
        left = ticks_diff(self._next_beacon, now)
        if left > 0:
            return left
        is_open = self.join_open()
        self._pair_send(BROADCAST, T_BEACON, 0, [self.net_id, self.channel, self.mac, is_open])
        self.count("beacons_tx")
        iv = self.beacon_open_ms if is_open else self.beacon_closed_ms
        self._next_beacon = ticks_add(now, iv)
        return iv


class NodeLink(_Role):
    """Node role: one gateway, found by scanning, remembered in <store>/pair.json."""

    def __init__(self, esp, mac, channels=None, dwell_ms=250, rescan_dwell_ms=1100, fail_limit=3,
                 lost_ms=30000, want_native=True, join_tries=5, join_retry_ms=300, **kw):
        Link.__init__(self, esp, mac, **kw)
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
        saved = load_json(self.store + "/pair.json") if self.store is not None else None
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
        save_json(self.store + "/pair.json", {"gw": _hex(self.gateway), "ch": self.channel, "net": self.net_id,
                                              "key": _hex(p.key) if p.key else "", "sec": p.sec})

    def forget(self):
        """Drop the pairing (memory and store)."""
        if self.gateway is not None:
            self.reg.forget(self.gateway)
            self.table.remove(self.gateway)
        self.gateway = None
        if self.store is not None:
            try:
                os.remove(self.store + "/pair.json")
            except OSError:
                pass

    async def send_gw(self, mtype, obj, ack=True, msgid=0):
        """send() to the paired gateway; LinkError if not paired."""
        if self.gateway is None:
            raise LinkError("not paired")
        return await self.send(self.gateway, mtype, obj, ack, msgid)

    # ------------------------------------------------------------------ frames and timers
    def _pairing_frame(self, src, h, buf, n):
        t = h.mtype
        if t == T_JOIN_REQ:
            return
        obj = self._pair_body(h, buf, n)
        if obj is None:
            return
        if t == T_BEACON:
            self.count("beacons_rx")
            if len(obj) < 4:
                self.count("bad_msgpack")
                return
            if src == self.gateway:
                self._seen()
            want = self._want
            if want is not None and ((want == b"open" and obj[3]) or want == src):
                self._beacon = (src, obj[1])
        elif self._join is not None and src == self._join[0] and 1 <= h.msgid <= self._join[2]:
            if t == T_JOIN_ACCEPT and len(obj) >= 4 and isinstance(obj[1], bytes):
                self._reply = obj
            elif t == T_JOIN_REFUSED:
                self.count("join_refused")
                self._reply = obj

    def _seen(self):
        self._gw_seen = self.clock()
        self._fails = 0

    def _alive(self, peer):
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
            await sleep_ms(max(1, min(w, self.idle_ms, left)))
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
        self._ctr["rx"].pop(_hex(gw), None)   # a new key starts a new command counter space
        self._save_ctr()
        self._adopt(gw, r[3], key, r[2] if key is not None else SEC_NONE)
        self._save_pair()
        self.lost = False
        self._seen()
        return True

    async def rescan(self, timeout_ms=60000):
        """Look for the paired gateway on every channel (it may have moved). True if found."""
        if self.gateway is None:
            return False
        self.count("rescans")
        found = await self._scan(self.gateway, self.rescan_dwell_ms, timeout_ms)
        if found is None:
            return False
        self._set_channel(found[1])
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
                    await sleep_ms(self.idle_ms)
                continue
            wait = self.service()
            if self.esp.any():
                wait = 0
            elif wait > self.idle_ms:
                wait = self.idle_ms
            await sleep_ms(wait)


_link = sys.modules["fieldlink.link"]
_link.GatewayLink = GatewayLink
_link.NodeLink = NodeLink
