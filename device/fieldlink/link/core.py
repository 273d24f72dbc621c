# Reliable ESP-NOW link layer: framing, application ACKs with retries, dedup, fragmentation,
# replay counters, LRU peer registration, pairing. docs/protocol.md "ESP-NOW link frame".
# This file: the public API, sending (Tx, fragmenting, retries with backoff, resend), timers and the
# run loop. Receiving (parse, auth, dedup, reassembly, delivery, ACKs, result cache): the Receiver
# object in rx.py (link.rx), which gets what it needs from the link through its constructor.
# The two sides, built on this core (which never imports them): gateway_link.py, node_link.py, with
# the shared pairing frames in pairing.py. Frame codec: frame.py.
#
# PUBLIC API
#
#   link = GatewayLink(esp, mac, wlan=wlan, store="/fl", pmk=b"16 bytes", net_id=1)
#   link = NodeLink(esp, mac, wlan=wlan, store="/fl", pmk=b"16 bytes", net_id=1)
#     esp   : espnow.ESPNow (or aioespnow.AIOESPNow) instance, active
#     mac   : own MAC (6 bytes)
#     wlan  : network.WLAN(STA_IF) (for config(channel=...)); None = channel fixed
#     store : directory for persisted state (boot id, pairing, replay counters); None = memory only
#     clock : callable -> ms ticks (default time.ticks_ms); tests inject a fake clock
#     seed  : int seed for the deterministic backoff jitter
#
#   link.on(mtype, handler)          handler(src_mac, mtype, obj, msgid) -> result
#                                     result goes back in the ACK (commands); exceptions -> ST_ERROR ACK
#   tx = link.submit(dst, mtype, obj, ack=True, msgid=0)  -> Tx   (non-blocking, raises LinkError)
#   result = await link.send(dst, mtype, obj, ack=True, msgid=0)  (raises LinkError after retries;
#                                     after a give-up e.tx = the Tx: link.resend(e.tx) repeats the same
#                                     frames while link.can_resend(e.tx), so the receiver dedups them)
#   link.feed(src_mac, frame_bytes)  process one received frame
#   link.poll() -> ms until next timer (retries, reassembly timeouts, beacons)
#   await link.run()                 receive + timer loop (asyncio task); link.stop()
#   link.counters                    dict of error/traffic counters (see COUNTERS)
#
#   GatewayLink: permit_join(seconds), join_open(), nodes(), node(mac), forget(mac), on_join = fn(mac)
#   NodeLink:    paired, gateway, channel, lost, await join(timeout_ms), await rescan(timeout_ms),
#                await send_gw(mtype, obj, ack=True, msgid=0), forget()
import asyncio

from fieldlink.codec import mpack
from fieldlink.link.fragment import split
from fieldlink.link.frame import (  # noqa: F401  (re-exported message types / status codes)
    ERR_NAMES, F_ACK_REQ, F_AUTH, F_CTR, F_FRAG, MAX_FRAME, ST_BUSY, ST_DENIED, ST_DUP, ST_ERROR, ST_OK, ST_REPLAY,
    ST_UNHANDLED, T_ACK, T_BEACON, T_COMMAND, T_EVENT, T_HEARTBEAT, T_JOIN_ACCEPT, T_JOIN_REFUSED,
    T_JOIN_REQ, T_OTA_CHUNK, T_RAW, T_TELEMETRY, T_TIME_SYNC, TYPE_NAMES, build, check_tag,
    overhead, parse, ticks_add, ticks_diff, ticks_ms,
)
from fieldlink.link.rx import Receiver, _hex, _unhex  # noqa: F401  (_unhex: re-exported for pairing)
from fieldlink.link.peers import (  # noqa: F401
    D_NEW, SEC_AUTH, SEC_ESPNOW, SEC_NONE, PeerTable, Registrar,
)
from fieldlink.runtime.clock import asleep_ms
from fieldlink.runtime.store import read_json, write_json

BROADCAST = b"\xff\xff\xff\xff\xff\xff"

COUNTERS = (
    "tx_frames", "rx_frames", "tx_msgs", "rx_msgs", "acks_tx", "acks_rx",
    "short", "bad_version", "unknown_type", "bad_flags", "bad_fragment", "bad_msgpack", "bad_auth",
    "duplicate", "replay", "reasm_timeout", "oversize", "too_many_frags", "reasm_mem",
    "retries", "send_fail", "give_up", "handler_error", "unhandled", "unknown_peer", "stray_ack",
    "busy", "evictions", "table_full", "join_accepted", "join_refused", "beacons_tx", "beacons_rx",
    "rescans", "wrong_net",
)


class LinkError(Exception):
    """A message could not be delivered (.status: None = no ACK after all tries, ST_BUSY = not sent because
    the peer has too many messages in flight, else the ACK status)."""

    def __init__(self, msg, status=None, result=None):
        super().__init__(msg)
        self.status = status
        self.result = result
        self.tx = None


class Tx:
    """One outgoing message: its frames, retry state and outcome."""

    def __init__(self, dst, mtype, seq, frames, ack):
        self.dst = dst
        self.mtype = mtype
        self.seq = seq
        self.frames = frames
        self.ack = ack
        self.tries = 0
        self.due = 0
        self.done = False
        self.status = None      # ACK status, None = no ACK (yet / after all tries)
        self.result = None
        self.event = None
        self.cb = None          # cb(tx) when done
        self.key = None         # the key the frames are tagged with (resend needs the same one)


class Link:
    """The link core shared by both roles: sending, retries, timers; receiving is done by self.rx, a
    fieldlink.link.rx.Receiver. Not used directly: see GatewayLink and NodeLink, which pass the
    receiver's role callbacks: pairing(src, h, buf, n) for beacon/join frames, alive(peer) for every
    valid frame."""

    def __init__(self, esp, mac, wlan=None, store=None, clock=None, seed=1, pmk=None, net_id=0,
                 max_tries=5, base_ms=50, cap_ms=1000, jitter=True, max_msg=2048, reasm_mem=4096,
                 reasm_timeout_ms=2000, max_frags=16, window=64, max_peers=20, max_encrypted=6,
                 max_nodes=256, max_inflight=8, boot_id=None, sync=True, idle_ms=5, pairing=None,
                 alive=None):
        self.esp = esp
        self.mac = bytes(mac)
        self.wlan = wlan
        self.store = store
        self.clock = clock or ticks_ms
        self.pmk = bytes(pmk) if pmk is not None else None
        self.net_id = net_id
        self.max_tries = max_tries
        self.base_ms = base_ms
        self.cap_ms = cap_ms
        self.jitter = jitter
        self.max_msg = max_msg
        self.max_frags = max_frags
        self.max_inflight = max_inflight
        self.sync = sync
        self.idle_ms = idle_ms
        self._rng = (seed or 1) & 0xFFFFFFFF or 1
        self.counters = {}
        for k in COUNTERS:
            self.counters[k] = 0
        self.table = PeerTable(max_nodes, window)
        self.reg = Registrar(esp, self.clock, max_peers, max_encrypted, self.counters)
        self.pending = {}
        self._running = False
        ctr_rx = {}
        self._ctr_tx = {}
        if store is not None:
            c = read_json(store + "/ctr.json", "link counters")
            if isinstance(c, dict):
                ctr_rx = c.get("rx") or {}
                self._ctr_tx = c.get("tx") or {}
        if boot_id is None:
            boot_id = self._next_boot()
        self.boot_id = boot_id & 0xFF
        self.rx = Receiver(self.counters, self.table, self.clock, self._raw_send, self._match_ack, self._finish,
                           self._save_ctr, self.pmk, ctr_rx, max_msg, reasm_mem, reasm_timeout_ms, max_frags,
                           pairing, alive)
        self.reg.ensure(BROADCAST, None, True)

    # ------------------------------------------------------------------------------ helpers
    def _next_boot(self):
        if self.store is None:
            import os
            return os.urandom(1)[0]
        b = read_json(self.store + "/boot.json", "link boot id")
        b = (b + 1) if isinstance(b, int) else 1
        write_json(self.store + "/boot.json", b)
        return b

    def rand(self):
        """xorshift32: the same sequence on CPython and MicroPython for one seed."""
        x = self._rng
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._rng = x
        return x

    def backoff(self, tries):
        """ms to wait for an ACK after the tries-th transmission: min(cap, base * 2**(tries-1)),
        plus, with jitter, a seeded random 0..25% of that."""
        d = self.base_ms << (tries - 1) if tries < 16 else self.cap_ms
        if d > self.cap_ms:
            d = self.cap_ms
        if self.jitter:
            d += self.rand() % (d // 4 + 1)
        return d

    def count(self, name, n=1):
        self.counters[name] = self.counters.get(name, 0) + n

    def on(self, mtype, handler):
        """Register handler(src_mac, mtype, obj, msgid) -> result for one message type."""
        self.rx.on(mtype, handler)

    def feed(self, src, buf):
        """Process one received frame (the receiver's feed)."""
        self.rx.feed(src, buf)

    def stats(self):
        return dict(self.counters)

    def _raw_send(self, dst, frame, lmk=None, pin=False):
        """Register dst if needed and send one frame. Returns True if the radio accepted it."""
        try:
            self.reg.ensure(dst, lmk, pin or lmk is not None)
            ok = self.esp.send(dst, frame, self.sync)
        except OSError:
            ok = False
        self.count("tx_frames")
        if ok is False:
            self.count("send_fail")
            return False
        return True

    # ---------------------------------------------------------------------------- counters
    def _save_ctr(self):
        """Persist the replay counters: the receiver's accepted ones (rx) and the sent ones (tx)."""
        if self.store is not None:
            write_json(self.store + "/ctr.json", {"rx": self.rx.ctr_rx, "tx": self._ctr_tx})

    def _next_ctr(self, peer):
        """Next command counter for peer; persisted ahead in blocks of 32 (a reboot skips ahead)."""
        h = _hex(peer.mac)
        hi = self._ctr_tx.get(h, 0)
        if peer.ctr_tx == 0:
            peer.ctr_tx = hi
        peer.ctr_tx += 1
        if peer.ctr_tx >= hi:
            # every counter ever used stays below the persisted high-water mark
            self._ctr_tx[h] = peer.ctr_tx + 32
            self._save_ctr()
        return peer.ctr_tx

    # ------------------------------------------------------------------------------- sending
    def send_unseq(self, dst, mtype, obj):
        """One unsequenced frame (sequence 0: no ACK, no dedup, no fragments) to a known peer, tagged with
        its key. For protocols with their own acknowledgements (the OTA chunk transfer): they must not use
        the peer's sequence space. Returns False if it cannot go (unknown peer, too big, radio refused)."""
        dst = bytes(dst)
        peer = self.table.get(dst)
        if peer is None:
            return False
        body = mpack.packb(obj)
        if overhead(F_AUTH if peer.key is not None else 0) + len(body) > MAX_FRAME:
            self.count("oversize")
            return False
        return self._raw_send(dst, build(mtype, 0, self.boot_id, 0, 0, body, 0, 0, 0, peer.key), peer.lmk())

    def submit(self, dst, mtype, obj, ack=True, msgid=0, cb=None):
        """Encode, fragment and transmit a message now; with ack=True it is retried until ACKed.

        Returns a Tx. Raises LinkError if the message is too large, the peer is unknown on a
        secured network, or too many messages to this peer are in flight (counted 'busy')."""
        dst = bytes(dst)
        if dst == BROADCAST:
            ack = False
            peer = None
        else:
            peer = self.table.get(dst)
            if peer is None:
                if self.pmk is not None:
                    raise LinkError("peer %s not paired" % _hex(dst), ST_DENIED)
                peer = self.table.add(dst)
                if peer is None:
                    self.count("table_full")
                    raise LinkError("peer table full")
            if ack and peer.inflight >= self.max_inflight:
                self.count("busy")
                raise LinkError("busy: %d messages in flight" % peer.inflight, ST_BUSY)
            if mtype == T_COMMAND and peer.cmd_inflight:
                # commands go one at a time per peer so counters arrive in increasing order
                self.count("busy")
                raise LinkError("busy: a command to this peer is in flight", ST_BUSY)
        body = mpack.packb(obj)
        if len(body) > self.max_msg:
            self.count("oversize")
            raise LinkError("message of %d bytes > max_msg %d" % (len(body), self.max_msg))
        flags = F_ACK_REQ if ack else 0
        key = None
        ctr = 0
        seq = 0
        if peer is not None:
            key = peer.key
            if mtype == T_COMMAND:
                flags |= F_CTR
                ctr = self._next_ctr(peer)
            seq = peer.next_seq()
        else:
            key = self.pmk      # broadcast: unsequenced, signed with the network key
        auth = F_AUTH if key is not None else 0
        if overhead(flags | auth) + len(body) <= MAX_FRAME:
            frames = [build(mtype, flags, self.boot_id, seq, msgid, body, ctr, 0, 0, key)]
        else:
            if peer is None:
                self.count("oversize")
                raise LinkError("a broadcast must fit in one frame")
            parts = split(body, MAX_FRAME - overhead(flags | auth | F_FRAG))
            if len(parts) > self.max_frags:
                self.count("too_many_frags")
                raise LinkError("message needs %d fragments > %d" % (len(parts), self.max_frags))
            n = len(parts)
            frames = [build(mtype, flags | F_FRAG, self.boot_id, seq, msgid, parts[i], ctr, i, n, key)
                      for i in range(n)]
        tx = Tx(dst, mtype, seq, frames, ack)
        tx.cb = cb
        tx.key = key
        self.count("tx_msgs")
        if ack:
            self.pending[(dst, seq)] = tx
            peer.inflight += 1
            if mtype == T_COMMAND:
                peer.cmd_inflight = True
        self._transmit(tx, peer)
        if not ack:
            tx.done = True
        return tx

    def _transmit(self, tx, peer):
        tx.tries += 1
        lmk = peer.lmk() if peer is not None else None
        for f in tx.frames:
            self._raw_send(tx.dst, f, lmk)
        if tx.ack:
            tx.due = ticks_add(self.clock(), self.backoff(tx.tries))

    def _finish(self, tx, status, result):
        tx.done = True
        tx.status = status
        tx.result = result
        self.pending.pop((tx.dst, tx.seq), None)
        peer = self.table.get(tx.dst)
        if peer is not None and peer.inflight > 0:
            peer.inflight -= 1
            if tx.mtype == T_COMMAND:
                peer.cmd_inflight = False
        if status is None:
            self.count("give_up")
        self._delivered(tx, status is not None)
        if tx.event is not None:
            tx.event.set()
        if tx.cb is not None:
            tx.cb(tx)

    def _match_ack(self, mac, msgid, boot):
        """The message in flight an ACK from mac answers (it echoes our boot id), or None."""
        if boot != self.boot_id:
            return None
        return self.pending.get((mac, msgid))

    def _delivered(self, tx, ok):
        """Hook for roles: a message got its ACK (ok) or exhausted its tries."""

    async def send(self, dst, mtype, obj, ack=True, msgid=0):
        """Send and, with ack=True, wait for the ACK. Returns the ACK result (commands).

        Waits while the peer has max_inflight messages in flight. Raises LinkError when no ACK came
        after max_tries (status None) or the ACK status is not ST_OK/ST_DUP (status set)."""
        while True:
            try:
                tx = self.submit(dst, mtype, obj, ack, msgid)
                break
            except LinkError as e:
                if e.status != ST_BUSY:
                    raise
                await asleep_ms(self.base_ms // 2 or 1)
        if not ack:
            return None
        return await self._outcome(tx)

    async def _outcome(self, tx):
        if not tx.done:
            tx.event = asyncio.Event()
            if not tx.done:
                await tx.event.wait()
        if tx.status is None:
            e = LinkError("no ACK from %s after %d tries" % (_hex(tx.dst), tx.tries))
            e.tx = tx   # resend(e.tx) later repeats the same message (the receiver dedups it)
            raise e
        if tx.status != ST_OK and tx.status != ST_DUP:
            raise LinkError("refused by %s: status %d" % (_hex(tx.dst), tx.status), tx.status, tx.result)
        return tx.result

    def can_resend(self, tx):
        """True if resend(tx) can still be recognised by the receiver's dedup: tx was ACK-requested, the
        peer is known with the key its frames carry, and fewer than half a dedup window of newer
        messages went to the peer since (a sequence behind the window would be answered "duplicate"
        without being applied). Otherwise the caller sends the content afresh (a new message)."""
        peer = self.table.get(tx.dst)
        if peer is None or not tx.ack or peer.key != tx.key:
            return False
        return ((peer.tx_seq - tx.seq) & 0xFFFF) < self.table.window // 2

    async def resend(self, tx):
        """Send an unacknowledged message again, frame for frame (same sequence, same command counter),
        and wait for its ACK like send(). A receiver that already applied it answers from its dedup
        window and result cache instead of applying it twice; a fresh send() could not be recognised.
        Raises LinkError like send() (with .tx set again when there is still no ACK)."""
        peer = self.table.get(tx.dst)
        if peer is None or peer.key != tx.key:
            # re-paired since: frames tagged with the old key would only be dropped (bad_auth)
            raise LinkError("peer %s not known with this key" % _hex(tx.dst), ST_DENIED)
        if not tx.done:     # still being retried: just wait for it
            return await self._outcome(tx)
        while peer.inflight >= self.max_inflight or (tx.mtype == T_COMMAND and peer.cmd_inflight):
            await asleep_ms(self.base_ms // 2 or 1)
        tx.tries = 0
        tx.done = False
        tx.status = None
        tx.result = None
        tx.event = None
        self.pending[(tx.dst, tx.seq)] = tx
        peer.inflight += 1
        if tx.mtype == T_COMMAND:
            peer.cmd_inflight = True
        self.count("retries")
        self._transmit(tx, peer)
        return await self._outcome(tx)

    # --------------------------------------------------------------------------------- timers
    def poll(self):
        """Run due retransmissions and timeouts; return ms until the next timer (<= 1000)."""
        now = self.clock()
        nxt = 1000
        for tx in list(self.pending.values()):
            left = ticks_diff(tx.due, now)
            if left <= 0:
                if tx.tries >= self.max_tries:
                    self._finish(tx, None, None)
                    continue
                self.count("retries")
                self._transmit(tx, self.table.get(tx.dst))
                left = ticks_diff(tx.due, now)
            if left < nxt:
                nxt = left
        d = self.rx.expire(now)
        if d is not None and d < nxt:
            nxt = d
        d = self._timers(now)
        if d is not None and d < nxt:
            nxt = d
        return nxt if nxt > 0 else 0

    def _timers(self, now):
        """Hook for roles: periodic work (beacons, liveness). Returns ms until next or None."""
        return None

    def service(self, budget=16):
        """Drain up to budget received frames from the radio, then poll(). Returns poll()'s value."""
        esp = self.esp
        for _ in range(budget):
            if not esp.any():
                break
            mac, msg = esp.irecv(0)
            if mac is None:
                break
            self.rx.feed(mac, msg)
        return self.poll()

    def _step(self):
        """One pass of the run loop: service(); ms to sleep (0 while frames wait, at most idle_ms)."""
        wait = self.service()
        if self.esp.any():
            return 0
        return wait if wait <= self.idle_ms else self.idle_ms

    async def run(self):
        """Receive/timer loop; run as an asyncio task until stop()."""
        self._running = True
        while self._running:
            await asleep_ms(self._step())

    def stop(self):
        self._running = False
