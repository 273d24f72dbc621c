# The node's messages to the gateway: telemetry batches (exactly once across give-ups: an unacknowledged
# batch keeps its q and body and is repeated frame for frame with Link.resend), events (the head event is
# repeated the same way) and heartbeats. Reporter owns what it sends (pending readings, the message on the
# air, queued events) and gets everything else through its constructor:
#   Reporter(link, state, counters, opt, log, clock, epoch_ms, heartbeat)
#     state     .boot, .next_seq()          counters  dict, incremented in place
#     opt(key, default) -> option value     epoch_ms() -> ms or None     heartbeat() -> heartbeat body
#   add_reading(name, values, now), add_event(map), telemetry_due(now),
#   await send_telemetry() / send_events() / send_heartbeat() -> True on ACK; expect_cmds (from the ACKs)
from fieldlink.codec import mpack
from fieldlink.link.core import T_EVENT, T_HEARTBEAT, T_TELEMETRY, LinkError
from fieldlink.runtime.tasks import ticks_diff


MAX_PENDING = 64  # readings kept while the gateway is unreachable (the oldest not on the air is dropped)
MAX_EVENTS = 16


def with_sleep(m, opt):
    """m with the node's sleep period ("sl", ms) when it sleeps between wakes: the gateway holds its
    commands for the next wake (telemetry and heartbeats carry it; docs/roles.md)."""
    sl = opt("sleep_ms", 0)
    if sl:
        m["sl"] = sl
    return m


class Reporter:
    def __init__(self, link, state, counters, opt, log, clock, epoch_ms, heartbeat):
        self.link = link
        self.state = state
        self.counters = counters
        self.opt = opt
        self.log = log
        self.clock = clock
        self.epoch_ms = epoch_ms
        self.heartbeat = heartbeat
        self.pending = []  # [name, value, tick]; the first self._tel[1] are in the message being delivered
        # telemetry message that went on the air without an ACK: [msg, n readings, Tx or None, aired]
        self._tel = None
        self._tel_q = None  # q of a message that never left the node (reused by the next one)
        self._first_pending = None
        self.events = []  # event maps waiting to be sent
        self._evt_tx = None  # Tx of events[0] after a give-up, repeated by send_events (exactly once)
        self.expect_cmds = 0  # commands the gateway said it holds for us (the "p" of its last ACK)
        self.expect_ota = None  # an update the gateway holds for us (the "ota" of its last ACK)

    def count(self, name, n=1):
        self.counters[name] = self.counters.get(name, 0) + n

    def add_reading(self, name, v, now):
        if not self.pending:
            self._first_pending = now
        self.pending.append([name, v, now])
        if len(self.pending) > MAX_PENDING:
            # oldest reading NOT in the message being delivered (its q and body are fixed until ACKed)
            self.pending.pop(self._tel[1] if self._tel is not None else 0)
            self.count("tel_dropped")

    def add_event(self, m):
        self.events.append(m)
        if len(self.events) > MAX_EVENTS:
            # drop the oldest that is not the one on the air (its Tx must keep matching events[0])
            self.events.pop(1 if self._evt_tx is not None else 0)

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
        return with_sleep(m, self.opt)

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

    async def send_heartbeat(self):
        try:
            r = await self.link.send_gw(T_HEARTBEAT, self.heartbeat())
        except LinkError:
            self.count("hb_fail")
            return False
        self.count("hb_tx")
        self._note_gw_result(r)
        return True
