# Gateway side of the link (GatewayLink): pairing window, beacons, node keys, LRU registrations.
#
# Gateway: permit_join(seconds) opens a window; beacons [net_id, channel, gateway mac, open] go to
# broadcast every beacon_open_ms while it is open and every beacon_closed_ms otherwise (so a node that
# lost its gateway finds the new channel). JOIN_REQ inside the window -> JOIN_ACCEPT with a fresh
# 16-byte LMK wrapped with the network PMK; outside it -> JOIN_REFUSED.
import os

from fieldlink.link.core import BROADCAST, Link, _hex, _unhex
from fieldlink.link.frame import T_BEACON, T_JOIN_ACCEPT, T_JOIN_REFUSED, T_JOIN_REQ, ticks_add, ticks_diff
from fieldlink.link.pairing import KEY_LEN, NONCE_LEN, PairingLink, _setch, wrap_key
from fieldlink.link.peers import SEC_AUTH, SEC_ESPNOW, SEC_NONE
from fieldlink.runtime.store import read_json, write_json


class GatewayLink(PairingLink):
    """Gateway role: pairing window, beacons, one ESP-NOW registration per active node (LRU)."""

    def __init__(self, esp, mac, channel=1, beacon_open_ms=200, beacon_closed_ms=1000, **kw):
        Link.__init__(self, esp, mac, pairing=self._pairing_frame, **kw)
        self.channel = channel
        _setch(self.wlan, channel)
        self.beacon_open_ms = beacon_open_ms
        self.beacon_closed_ms = beacon_closed_ms
        self.on_join = None
        self._join_until = None
        self._next_beacon = self.clock()
        self._nonce = {}
        self.paired = {}   # mac -> sec
        saved = read_json(self.store + "/nodes.json", "paired nodes") if self.store is not None else None
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
        write_json(self.store + "/nodes.json", d)

    def _n_native(self):
        n = 0
        for sec in self.paired.values():
            if sec == SEC_ESPNOW:
                n += 1
        return n

    def _pairing_frame(self, src, h, buf, n):
        """The receiver's pairing callback: JOIN_REQs (inside the window: accepted)."""
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
