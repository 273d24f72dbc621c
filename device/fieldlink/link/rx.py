# Receiving side of the link core: parse and authenticate one frame, dedup per sender and boot (sliding
# window), reassemble fragments, check command replay counters, run the handler and answer with an ACK
# (fragmented when the result does not fit one frame) from the per-peer result cache for duplicates;
# match incoming ACKs to the messages in flight. docs/protocol.md "ACKs, retries, dedup".
#
# Receiver is an object of its own, created by fieldlink.link.core.Link (link.rx). It owns the header
# buffer, the reassembler, the message handlers and the command replay high-water marks; everything
# else it needs comes through its constructor (see Receiver.__init__): it reads no attribute of the
# link and the link's sides (gateway_link, node_link) override nothing of it, they pass callbacks.
from fieldlink.codec import mpack
from fieldlink.link.fragment import R_BAD, R_DONE, R_DUP, R_MEM, R_OVERSIZE, R_TOO_MANY, Reassembler, split
from fieldlink.link.frame import (
    ERR_NAMES, F_ACK_REQ, F_AUTH, F_CTR, F_FRAG, MAX_FRAME, ST_DUP, ST_ERROR, ST_OK, ST_REPLAY,
    ST_UNHANDLED, T_ACK, T_BEACON, T_COMMAND, T_JOIN_ACCEPT, T_JOIN_REFUSED, T_JOIN_REQ, Header, build,
    check_tag, overhead, parse,
)
from fieldlink.link.peers import D_NEW


def _hex(mac):
    return "".join("%02x" % b for b in mac)


def _unhex(s):
    return bytes(int(s[i:i + 2], 16) for i in range(0, len(s), 2))


class Receiver:
    """Frame intake, dedup, reassembly, delivery and ACKs for one link.

    Receiver(counters, table, clock, send, match, finish, persist, pmk=None, ctr_rx=None, max_msg=2048,
             reasm_mem=4096, reasm_timeout_ms=2000, max_frags=16, pairing=None, alive=None)

    What it is given (the whole interface with its owner; every callback takes at most 4 arguments, so
    calling the bound methods a link passes allocates nothing on MicroPython):
      counters  the link's counters dict: the receiver increments its own keys in it (see core.COUNTERS)
      table     the link's PeerTable (get / add): dedup windows and result caches live in each Peer
      clock()   -> ms ticks
      send(dst, frame, lmk)              transmit one frame (ACKs)
      match(mac, msgid, boot) -> Tx|None the message in flight an ACK answers (None: a stray ACK)
      finish(tx, status, result)         that message got its ACK
      persist()                          save the replay counters (ctr_rx) now: called before a command
                                         runs, so after a crash a command is lost, never run twice
      pmk       network key (bytes) or None: unknown peers are refused, broadcasts checked with it
      ctr_rx    {hex mac: last accepted command counter}, as persisted; the receiver owns it from here
      pairing(src, h, buf, n)   beacon / join frames (default: counted "unhandled")
      alive(peer)               a valid frame arrived from peer (default: nothing)
    What it owns: the parsed header buffer, the Reassembler (reasm), the handlers (on()) and ctr_rx,
    which the owner reads (never writes) when persist() asks it to save; forget_ctr() drops a peer's.
    """

    def __init__(self, counters, table, clock, send, match, finish, persist, pmk=None, ctr_rx=None,
                 max_msg=2048, reasm_mem=4096, reasm_timeout_ms=2000, max_frags=16, pairing=None, alive=None):
        self.counters = counters
        self.table = table
        self.clock = clock
        self._send = send
        self._match = match
        self._finish = finish
        self._persist = persist
        self.pmk = pmk
        self.ctr_rx = ctr_rx if ctr_rx is not None else {}
        self.max_msg = max_msg
        self.max_frags = max_frags
        self._pairing = pairing
        self._alive = alive
        self.handlers = {}
        self.reasm = Reassembler(max_msg, reasm_mem, reasm_timeout_ms, max_frags, 8,
                                 MAX_FRAME - overhead(F_FRAG))
        self._hdr = Header()

    def on(self, mtype, handler):
        """Register handler(src_mac, mtype, obj, msgid) -> result for one message type."""
        self.handlers[mtype] = handler

    def expire(self, now):
        """Drop reassemblies that timed out (counted); ms until the next one does, or None."""
        k = self.reasm.expire(now)
        if k:
            self.counters["reasm_timeout"] += k
        return self.reasm.next_deadline(now)

    def forget_ctr(self, mac):
        """Start a new command counter space for mac (a new key); the caller persists."""
        self.ctr_rx.pop(_hex(mac), None)

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
            if self._pairing is None:
                c["unhandled"] += 1
            else:
                self._pairing(bytes(src), h, buf, n)
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
        if self._alive is not None:
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
        self.counters["duplicate"] += 1
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
            self.ctr_rx[_hex(peer.mac)] = ctr
            self._persist()
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
        c = self.counters
        tx = self._match(peer.mac, h.msgid, h.boot)
        if tx is None:
            c["stray_ack"] += 1
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
            ack = mpack.unpackb(body)
        except (ValueError, TypeError):
            c["bad_msgpack"] += 1
            return
        # an ACK is [status u8, result]; anything else (a non-integer status, a map, a short list)
        # is counted and dropped, so send() only ever sees integer statuses (no TypeError)
        if not isinstance(ack, (list, tuple)) or len(ack) != 2 or type(ack[0]) is not int or not 0 <= ack[0] <= 255:
            c["bad_msgpack"] += 1
            return
        st, res = ack
        c["acks_rx"] += 1
        self._finish(tx, st, res)

    def _peer_ctr_rx(self, peer):
        if peer.ctr_rx == 0:
            peer.ctr_rx = self.ctr_rx.get(_hex(peer.mac), 0)
        return peer.ctr_rx

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
        self.counters["acks_tx"] += 1
        lmk = peer.lmk()
        for f in frames:
            self._send(peer.mac, f, lmk)
