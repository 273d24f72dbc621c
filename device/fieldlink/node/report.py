# The node's messages to the gateway: telemetry batches (exactly once across give-ups: an unacknowledged
# batch keeps its q and body and is repeated frame for frame with Link.resend), events (the head event is
# repeated the same way) and heartbeats. A mixin of fieldlink.node.role.Node, split out to keep modules small;
# it uses the Node's link, state, pending readings, events, counters and options.
from fieldlink import VERSION
from fieldlink.codec import mpack
from fieldlink.link.core import T_EVENT, T_HEARTBEAT, T_TELEMETRY, LinkError
from fieldlink.runtime.tasks import ticks_diff


class Reporting:
    def telemetry_due(self, now):
        if self._tel is not None:
            return True     # an unacknowledged message is waiting to be repeated
        if not self.pending:
            return False
        if len(self.pending) >= self.opt("telemetry_batch", 4):
            return True
        return ticks_diff(now, self._first_pending) >= self.opt("batch_ms", 10000)

    def build_telemetry(self, now):
        """Message for the oldest pending readings, as many as fit the link's max_msg (the rest go next)."""
        room = getattr(self.link, "max_msg", None)
        room = room - 48 if room else None  # 48: map, keys, q, boot, ts, sl, array header
        r = []
        for name, v, t in self.pending:
            e = [name, v, ticks_diff(now, t)]
            if room is not None:
                room -= len(mpack.packb(e))
                if room < 0 and r:
                    break
            r.append(e)
        q = self._tel_q
        self._tel_q = None
        m = {"q": q if q is not None else self.state.next_seq(), "boot": self.state.boot, "r": r}
        ts = self.epoch_ms()
        if ts is not None:
            m["ts"] = ts
        sl = self.opt("sleep_ms", 0)
        if sl:
            m["sl"] = sl
        return m

    async def send_telemetry(self):
        """Send the pending readings; True on ACK. On failure they stay pending (bounded).

        Exactly once: a message that went on the air without an ACK (perhaps only the ACKs were lost) is
        never rebuilt. The next call repeats it frame for frame (Link.resend: the gateway's link dedup
        drops it if it arrived) or, when the link cannot (re-paired, too many newer messages since, a
        refusal), sends the same body again: same q and boot, which the gateway dedups (docs/roles.md).
        Ages and ts in a repeated message are those of its first sending."""
        t = self._tel
        if t is None:
            if not self.pending:
                return True
            msg = self.build_telemetry(self.clock())
            t = [msg, len(msg["r"]), None, False]
        msg, n, tx = t[0], t[1], t[2]
        link = self.link
        try:
            if tx is not None and self._can_resend(tx):
                r = await link.resend(tx)
            else:
                r = await link.send_gw(T_TELEMETRY, msg)
        except LinkError as e:
            self.count("tel_fail")
            self.log.debug("telemetry: %s" % e)
            etx = getattr(e, "tx", None) if e.status is None else None
            if e.status is None and etx is None and not t[3]:
                # refused before anything was sent (not paired, too large...): rebuilt next time, same q
                self._tel = None
                self._tel_q = msg["q"]
            else:
                t[2] = etx      # None after a refusal: a resend would only get the cached refusal
                t[3] = True
                self._tel = t
            return False
        self._tel = None
        del self.pending[:n]
        self._first_pending = self.pending[0][2] if self.pending else None
        self.count("tel_tx")
        self._note_gw_result(r)
        return True

    def _can_resend(self, tx):
        link = self.link
        if tx.dst != getattr(link, "gateway", tx.dst):
            return False
        can = getattr(link, "can_resend", None)
        return can is not None and can(tx)

    def _note_gw_result(self, r):
        if isinstance(r, dict) and isinstance(r.get("p"), int):
            self.expect_cmds = r["p"]
        self.expect_ota = r.get("ota") if isinstance(r, dict) else None     # an update waits at the gateway

    async def send_events(self):
        """Send queued events in order. Like telemetry, an event whose ACKs were all lost is repeated frame
        for frame (Link.resend) so the gateway's link dedup forwards it once."""
        while self.events:
            ev = self.events[0]
            tx = self._evt_tx
            try:
                if tx is not None and self._can_resend(tx):
                    r = await self.link.resend(tx)
                else:
                    r = await self.link.send_gw(T_EVENT, ev)
            except LinkError as e:
                self.count("evt_fail")
                self._evt_tx = getattr(e, "tx", None) if e.status is None else None
                return False
            self._evt_tx = None
            self.events.pop(0)
            self.count("evt_tx")
            self._note_gw_result(r)
        return True

    def build_heartbeat(self):
        m = {"up": self.uptime_s(), "boot": self.state.boot, "fw": VERSION, "role": "node",
             "relays": self.relay_state(), "c": {"tel_fail": self.counters["tel_fail"],
                                                 "invalid": self.counters["invalid"],
                                                 "crashes": self.sup.crashes,
                                                 "cmds": self.counters["cmds"]}}
        sl = self.opt("sleep_ms", 0)
        if sl:
            m["sl"] = sl
        return m

    async def send_heartbeat(self):
        try:
            r = await self.link.send_gw(T_HEARTBEAT, self.build_heartbeat())
        except LinkError:
            self.count("hb_fail")
            return False
        self.count("hb_tx")
        self._note_gw_result(r)
        return True

    # ------------------------------------------------------------------ tasks
    expect_cmds = 0
    expect_ota = None

