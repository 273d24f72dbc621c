# Reliable ESP-NOW link layer: framing, application ACKs with retries, dedup, fragmentation,
# replay counters, LRU peer registration, pairing. docs/protocol.md "ESP-NOW link frame".
#
# PUBLIC API (fixed; implementation being filled in)
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
#   result = await link.send(dst, mtype, obj, ack=True, msgid=0)  (raises LinkError after retries)
#   link.feed(src_mac, frame_bytes)  process one received frame
#   link.poll() -> ms until next timer (retries, reassembly timeouts, beacons)
#   await link.run()                 receive + timer loop (asyncio task); link.stop()
#   link.counters                    dict of error/traffic counters (see COUNTERS)
#
#   GatewayLink: permit_join(seconds), join_open(), nodes(), node(mac), forget(mac), on_join = fn(mac)
#   NodeLink:    paired, gateway, channel, lost, await join(timeout_ms), await rescan(timeout_ms),
#                await send_gw(mtype, obj, ack=True, msgid=0), forget()
import asyncio

from fieldlink import mpack
from fieldlink.fragment import (
    R_BAD, R_DONE, R_DUP, R_MEM, R_OVERSIZE, R_TOO_MANY, Reassembler, split,
)
from fieldlink.linkframe import (  # noqa: F401  (re-exported message types / status codes)
    ERR_NAMES, F_ACK_REQ, F_AUTH, F_CTR, F_FRAG, MAX_FRAME, ST_DENIED, ST_DUP, ST_ERROR, ST_OK, ST_REPLAY, ST_UNHANDLED, T_ACK, T_BEACON,
    T_COMMAND, T_EVENT, T_HEARTBEAT, T_JOIN_ACCEPT, T_JOIN_REFUSED, T_JOIN_REQ, T_OTA_CHUNK, T_RAW,
    T_TELEMETRY, T_TIME_SYNC, TYPE_NAMES, Header, build, check_tag, overhead, parse, ticks_add, ticks_diff,
    ticks_ms,
)
from fieldlink.peers import (  # noqa: F401
    D_NEW, SEC_AUTH, SEC_ESPNOW, SEC_NONE, PeerTable, Registrar, load_json, save_json,
)

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
    """A message could not be delivered (.status: None = no ACK after all tries, else the ACK status)."""

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


async def sleep_ms(ms):
    if hasattr(asyncio, "sleep_ms"):
        await asyncio.sleep_ms(ms)
    else:
        await asyncio.sleep(ms / 1000)


def _hex(mac):
    return "".join("%02x" % b for b in mac)


def _unhex(s):
    return bytes(int(s[i:i + 2], 16) for i in range(0, len(s), 2))


class Link:
    """The link core shared by both roles. Not used directly: see GatewayLink and NodeLink."""

    def __init__(self, esp, mac, wlan=None, store=None, clock=None, seed=1, pmk=None, net_id=0,
                 max_tries=5, base_ms=50, cap_ms=1000, jitter=True, max_msg=2048, reasm_mem=4096,
                 reasm_timeout_ms=2000, max_frags=16, window=64, max_peers=20, max_encrypted=6,
                 max_nodes=256, max_inflight=8, boot_id=None, sync=True, idle_ms=5):
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
        self.reasm = Reassembler(max_msg, reasm_mem, reasm_timeout_ms, max_frags, 8,
                                 MAX_FRAME - overhead(F_FRAG))
        self.handlers = {}
        self.pending = {}
        self._hdr = Header()
        self._running = False
        self._ctr = {"rx": {}, "tx": {}}
        if store is not None:
            c = load_json(store + "/ctr.json")
            if isinstance(c, dict):
                self._ctr["rx"] = c.get("rx") or {}
                self._ctr["tx"] = c.get("tx") or {}
        if boot_id is None:
            boot_id = self._next_boot()
        self.boot_id = boot_id & 0xFF
        self.reg.ensure(BROADCAST, None, True)

    # ------------------------------------------------------------------------------ helpers
    def _next_boot(self):
        if self.store is None:
            import os
            return os.urandom(1)[0]
        b = load_json(self.store + "/boot.json")
        b = (b + 1) if isinstance(b, int) else 1
        save_json(self.store + "/boot.json", b)
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
        self.handlers[mtype] = handler

    def stats(self):
        return dict(self.counters)

    def _lmk(self, peer):
        return peer.key if peer.sec == SEC_ESPNOW else None

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
        if self.store is not None:
            save_json(self.store + "/ctr.json", self._ctr)

    def _next_ctr(self, peer):
        """Next command counter for peer; persisted ahead in blocks of 32 (a reboot skips ahead)."""
        h = _hex(peer.mac)
        hi = self._ctr["tx"].get(h, 0)
        if peer.ctr_tx == 0:
            peer.ctr_tx = hi
        peer.ctr_tx += 1
        if peer.ctr_tx >= hi:
            # every counter ever used stays below the persisted high-water mark
            self._ctr["tx"][h] = peer.ctr_tx + 32
            self._save_ctr()
        return peer.ctr_tx

    def _peer_ctr_rx(self, peer):
        if peer.ctr_rx == 0:
            peer.ctr_rx = self._ctr["rx"].get(_hex(peer.mac), 0)
        return peer.ctr_rx

    # ------------------------------------------------------------------------------- sending
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
                raise LinkError("busy: %d messages in flight" % peer.inflight)
            if mtype == T_COMMAND and peer.cmd_inflight:
                # commands go one at a time per peer so counters arrive in increasing order
                self.count("busy")
                raise LinkError("busy: a command to this peer is in flight")
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
        lmk = self._lmk(peer) if peer is not None else None
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
                if not str(e).startswith("busy"):
                    raise
                await sleep_ms(self.base_ms // 2 or 1)
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

    async def resend(self, tx):
        """Send an unacknowledged message again, frame for frame (same sequence, same command counter),
        and wait for its ACK like send(). A receiver that already applied it answers from its dedup
        window and result cache instead of applying it twice; a fresh send() could not be recognised.
        Raises LinkError like send() (with .tx set again when there is still no ACK)."""
        peer = self.table.get(tx.dst)
        if peer is None:
            raise LinkError("peer %s not known" % _hex(tx.dst), ST_DENIED)
        while peer.inflight >= self.max_inflight or (tx.mtype == T_COMMAND and peer.cmd_inflight):
            await sleep_ms(self.base_ms // 2 or 1)
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

    def _ack(self, peer, seq, status, result):
        try:
            body = mpack.packb([status, result])
        except Exception:  # noqa: BLE001 - an unencodable handler result becomes an error ACK
            status, result = ST_ERROR, "result not encodable"
            body = mpack.packb([status, result])
        # an ACK echoes the boot id of the message it acknowledges (not the acker's own boot id), so a
        # late ACK for a message from the sender's previous boot can never complete a new message
        if overhead(F_AUTH) + len(body) <= MAX_FRAME:
            frames = [build(T_ACK, 0, peer.rx_boot, 0, seq, body, 0, 0, 0, peer.key)]
        else:
            # a result larger than one frame (e.g. a node's status) goes back in ACK fragments, all with
            # the acknowledged sequence as message id; a lost fragment is repaired by the sender's retry
            # (a duplicate is ACKed again from the cached result)
            parts = split(body, MAX_FRAME - overhead(F_AUTH | F_FRAG)) if len(body) <= self.max_msg else ()
            n = len(parts)
            if not n or n > self.max_frags:
                body = mpack.packb([ST_ERROR, "result too large"])
                frames = [build(T_ACK, 0, peer.rx_boot, 0, seq, body, 0, 0, 0, peer.key)]
            else:
                frames = [build(T_ACK, F_FRAG, peer.rx_boot, 0, seq, parts[i], 0, i, n, peer.key)
                          for i in range(n)]
        self.count("acks_tx")
        lmk = self._lmk(peer)
        for f in frames:
            self._raw_send(peer.mac, f, lmk)

    # ----------------------------------------------------------------------------- receiving
    def feed(self, src, buf):
        """Process one received frame (buf may be a reused buffer: nothing keeps a reference).
        src may be irecv's reused bytearray: it is copied once to bytes so it can key the peer table."""
        if type(src) is not bytes:
            src = bytes(src)
        c = self.counters
        c["rx_frames"] += 1
        n = len(buf)
        h = self._hdr
        err = parse(buf, n, h)
        if err:
            c[ERR_NAMES[err]] += 1
            return
        t = h.mtype
        if t == T_BEACON or t == T_JOIN_REQ or t == T_JOIN_ACCEPT or t == T_JOIN_REFUSED:
            self._pairing_frame(bytes(src), h, buf, n)
            return
        peer = self.table.get(src)
        if peer is None:
            if self.pmk is not None:
                c["unknown_peer"] += 1
                return
            peer = self.table.add(src)
            if peer is None:
                c["table_full"] += 1
                return
        seq = h.seq
        # seq 0 = unsequenced (broadcasts): no dedup, no ACK, no fragments, no counter
        unseq = seq == 0 and not (h.flags & (F_ACK_REQ | F_FRAG | F_CTR))
        if peer.key is not None:
            if not (h.flags & F_AUTH) or not check_tag(peer.key, buf, n):
                # a broadcast from a paired peer is signed with the network PMK instead
                if not (unseq and self.pmk is not None and h.flags & F_AUTH and check_tag(self.pmk, buf, n)):
                    c["bad_auth"] += 1
                    return
        elif h.flags & F_AUTH:
            c["bad_auth"] += 1
            return
        now = self.clock()
        peer.last_rx = now
        self._alive(peer)
        if t == T_ACK:
            self._on_ack(peer, h, buf)
            return
        mv = memoryview(buf)
        if unseq:
            try:
                obj = mpack.unpackb(mv[h.body:h.end])
            except ValueError:
                c["bad_msgpack"] += 1
                return
            self._deliver(peer, t, h.flags, 0, h.msgid, 0, obj)
            return
        peer.boot(h.boot)
        if h.flags & F_FRAG:
            if peer.check(seq) != D_NEW:
                self._duplicate(peer, h)
                return
            code, data = self.reasm.add((peer.mac, h.boot, seq), h.fidx, h.fcnt, mv[h.body:h.end], now)
            if code != R_DONE:
                self._reasm_error(code)
                return
            body = data
        else:
            if peer.check(seq) != D_NEW:
                self._duplicate(peer, h)
                return
            body = mv[h.body:h.end]
        try:
            obj = mpack.unpackb(body)
        except ValueError:
            c["bad_msgpack"] += 1
            return
        self._deliver(peer, h.mtype, h.flags, seq, h.msgid, h.ctr, obj)

    def _reasm_error(self, code):
        c = self.counters
        if code == R_DUP:
            c["duplicate"] += 1
        elif code == R_TOO_MANY:
            c["too_many_frags"] += 1
        elif code == R_OVERSIZE:
            c["oversize"] += 1
        elif code == R_MEM:
            c["reasm_mem"] += 1
        elif code == R_BAD:
            c["bad_fragment"] += 1

    def _duplicate(self, peer, h):
        self.count("duplicate")
        if h.flags & F_ACK_REQ and h.fidx == h.fcnt - 1:
            r = peer.recall(h.seq)
            if r is None:
                self._ack(peer, h.seq, ST_DUP, None)
            else:
                self._ack(peer, h.seq, ST_DUP if r[0] == ST_OK else r[0], r[1])

    def _deliver(self, peer, mtype, flags, seq, msgid, ctr, obj):
        c = self.counters
        if mtype == T_COMMAND:
            if not (flags & F_CTR) or ctr <= self._peer_ctr_rx(peer):
                c["replay"] += 1
                peer.mark(seq)
                peer.remember(seq, ST_REPLAY, None)
                if flags & F_ACK_REQ:
                    self._ack(peer, seq, ST_REPLAY, None)
                return
            # persisted before the command runs: after a crash a command is lost, never run twice
            peer.ctr_rx = ctr
            self._ctr["rx"][_hex(peer.mac)] = ctr
            self._save_ctr()
        if seq:
            peer.mark(seq)
        c["rx_msgs"] += 1
        fn = self.handlers.get(mtype)
        if fn is None:
            c["unhandled"] += 1
            status, result = ST_UNHANDLED, None
        else:
            try:
                status, result = ST_OK, fn(peer.mac, mtype, obj, msgid)
            except Exception as e:  # noqa: BLE001 - a failing handler must not stop the link
                c["handler_error"] += 1
                status, result = ST_ERROR, str(e)
        if flags & F_ACK_REQ:
            peer.remember(seq, status, result)
            self._ack(peer, seq, status, result)

    def _on_ack(self, peer, h, buf):
        tx = self.pending.get((peer.mac, h.msgid))
        if tx is None or h.boot != self.boot_id:
            self.count("stray_ack")
            return
        body = memoryview(buf)[h.body:h.end]
        if h.flags & F_FRAG:
            # fragmented ACK: keyed apart from data messages (boot ids are 0..255)
            code, data = self.reasm.add((peer.mac, 256 + h.boot, h.msgid), h.fidx, h.fcnt, body, self.clock())
            if code != R_DONE:
                self._reasm_error(code)
                return
            body = data
        try:
            st, res = mpack.unpackb(body)
        except (ValueError, TypeError):
            self.count("bad_msgpack")
            return
        self.count("acks_rx")
        self._finish(tx, st, res)

    def _alive(self, peer):
        """Hook for roles: a valid frame arrived from peer."""

    def _pairing_frame(self, src, h, buf, n):
        """Hook for roles: beacon / join frames."""
        self.count("unhandled")

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
        k = self.reasm.expire(now)
        if k:
            self.count("reasm_timeout", k)
        d = self.reasm.next_deadline(now)
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
            self.feed(mac, msg)
        return self.poll()

    async def run(self):
        """Receive/timer loop; run as an asyncio task until stop()."""
        self._running = True
        while self._running:
            wait = self.service()
            if self.esp.any():
                wait = 0
            elif wait > self.idle_ms:
                wait = self.idle_ms
            await sleep_ms(wait)

    def stop(self):
        self._running = False


# The role classes GatewayLink and NodeLink live in pairing.py (each file < 500 lines); importing
# pairing sets fieldlink.link.GatewayLink / NodeLink, whichever of the two modules is imported first.
import fieldlink.pairing  # noqa: E402, F401
