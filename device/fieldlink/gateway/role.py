# Gateway role: ESP-NOW side through the link layer (fieldlink.link.gateway_link.GatewayLink), ONE serial uplink to
# the host (fieldlink.gateway.uplink.Uplink). Forwards node telemetry/events/heartbeats up, host commands down,
# buffers uplink traffic in RAM while the host is away, queues commands for sleeping or unreachable
# nodes (bounded, with expiry) and answers the gateway commands ping, time_sync, pair_begin, pair_end,
# peers and status. docs/roles.md describes the behaviour, docs/protocol.md the uplink messages.
import binascii

import asyncio

from fieldlink import VERSION
from fieldlink.link.core import (
    BROADCAST, ST_ERROR, ST_UNHANDLED, T_COMMAND, T_EVENT, T_HEARTBEAT, T_OTA_CHUNK, T_TELEMETRY,
    T_TIME_SYNC, LinkError,
)
from fieldlink.gateway.ringbuf import CommandQueue
from fieldlink.runtime import native
from fieldlink.runtime.clock import asleep_ms, ticks_add, ticks_diff, ticks_ms
from fieldlink.runtime.role import RoleBase
from fieldlink.runtime.tasks import Log

# host ops handled by the OTA mailbox (docs/protocol.md "OTA uplink messages")
OTA_OPS = ("ota_image", "ota_data", "ota_push", "ota_cancel", "ota_state")
COUNTERS = ("tel_rx", "tel_dup", "evt_rx", "hb_rx", "host_cmds", "node_cmds", "cmds_ok", "cmds_failed",
            "cmds_queued", "cmds_expired", "cmds_overflow", "unknown_op", "bad_cmd", "time_tx")
TEL_SEEN = 8  # telemetry q values remembered per node (current boot), to drop a message sent again
PEERS_PAGE = 8  # peers per `peers` answer: 8 full entries stay well inside the host's 4096-byte frame


def mac_hex(mac):
    return binascii.hexlify(bytes(mac)).decode()


def mac_bytes(s):
    """'aabbccddeeff' or 'aa:bb:cc:dd:ee:ff' -> 6 bytes; ValueError otherwise."""
    if not isinstance(s, str):
        raise ValueError("mac must be a string")
    s = s.replace(":", "").replace("-", "")
    if len(s) != 12:
        raise ValueError("mac must have 12 hex digits")
    try:
        return binascii.unhexlify(s)
    except Exception:
        raise ValueError("mac is not hex")


class Gateway(RoleBase):
    def __init__(self, cfg, link, uplink, clock=ticks_ms, log=None, boot=0, wdt=None, ota=None):
        self.cfg = cfg
        opts = cfg.get("options") or {}
        self.opts = opts
        RoleBase.__init__(self, link, clock, log or Log("gw"), wdt)
        self.up = uplink
        self.boot = boot
        self.nodes = {}  # mac bytes -> info dict
        self.cq = CommandQueue(int(opts.get("cmd_queue_per_node", 8)), int(opts.get("cmd_queue_total", 256)),
                               int(opts.get("cmd_ttl_s", 600)) * 1000)
        self.awake_ms = int(opts.get("sleeper_awake_ms", 1500))
        self.time_every_ms = int(opts.get("time_broadcast_s", 60)) * 1000
        self._busy = {}
        self._pj_until = None  # tick the join window closes (None: closed)
        self.counters = {}
        for k in COUNTERS:
            self.counters[k] = 0
        uplink.on_message = self.on_host
        link.on(T_TELEMETRY, self._on_tel)
        link.on(T_EVENT, self._on_evt)
        link.on(T_HEARTBEAT, self._on_hb)
        # OTA over ESP-NOW (fieldlink.ota.mailbox.Mailbox, docs/protocol.md "OTA chunk transfer"), or None
        self.ota_box = ota
        if ota is not None:
            link.on(T_OTA_CHUNK, self._on_ota)
        try:
            link.on_join = self._on_join
        except Exception:
            pass

    # ------------------------------------------------------------------ time
    def set_time(self, epoch_ms):
        self.set_epoch(int(epoch_ms))
        try:  # keep the hardware RTC in step where there is one
            import machine
            import time
            tm = time.gmtime(self.epoch_base // 1000)
            machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], 0))
        except Exception:
            pass

    def broadcast_time(self):
        ts = self.epoch_ms()
        if ts is None:
            return False
        try:
            self.link.submit(BROADCAST, T_TIME_SYNC, {"ts": ts}, ack=False)
            self.counters["time_tx"] += 1
            return True
        except Exception as e:
            self.log.warn("time broadcast: %s" % e)
            return False

    # ------------------------------------------------------------------ node -> gateway
    def _node(self, mac):
        n = self.nodes.get(mac)
        if n is None:
            n = {"first": self.clock(), "last": self.clock(), "fw": None, "role": None, "boot": None,
                 "sleep": 0, "rssi": None, "msgs": 0}
            self.nodes[mac] = n
        return n

    def _heard(self, mac, obj):
        n = self._node(mac)
        n["last"] = self.clock()
        n["msgs"] += 1
        if isinstance(obj, dict):
            sl = obj.get("sl")
            if isinstance(sl, int):
                n["sleep"] = sl
            for k in ("fw", "role", "boot", "bd", "bat", "app"):
                if k in obj:
                    n[k] = obj[k]
        rssi = self._rssi(mac)
        if rssi is not None:
            n["rssi"] = rssi
        if self.cq.pending(mac):
            self._kick(mac)
        if self.ota_box is not None:
            self.ota_box.heard(mac, self.clock())   # a pending update starts (or resumes) while it is awake
        return n

    def _rssi(self, mac):
        # ESPNow.peers_table: {mac: [rssi, time_ms]} on MicroPython; fakes may answer through node()
        try:
            pt = self.link.esp.peers_table
            e = pt.get(bytes(mac))
            if e:
                return e[0]
        except Exception:
            pass
        try:
            info = self.link.node(mac)
        except Exception:
            return None
        return info.get("rssi") if isinstance(info, dict) else None

    def _ack_result(self, mac):
        p = self.cq.pending(mac)
        r = {"p": p} if p else None
        u = self.ota_box.pending(mac) if self.ota_box is not None else None
        if u is not None:   # an update waits: a battery node stays awake for it (docs/roles.md)
            r = r or {}
            r["ota"] = u
        return r

    # ------------------------------------------------------------------ OTA
    def _on_ota(self, mac, mtype, obj, msgid):
        self.ota_box.on_msg(mac, obj, self.clock())
        self._ota_events()

    def _ota_events(self):
        for m in self.ota_box.events():
            self.up.send(m)

    def _ota_cmd(self, cid, op, a):
        ok, r, err = self.ota_box.command(op, a, self.clock())
        if ok and op == "ota_push":
            for mac in list(self.ota_box.entries):
                n = self.nodes.get(mac)
                if n is not None and not n["sleep"]:
                    self.ota_box.heard(mac, self.clock())   # mains nodes start now; sleepers when they wake
        self._ota_events()
        if ok:
            self._res(cid, True, r=r)
        else:
            self._res(cid, False, err=err)

    async def _ota_task(self):
        send = self.link.send_unseq
        while self._running:
            out, nxt = self.ota_box.poll(self.clock())
            for mac, m in out:
                send(mac, T_OTA_CHUNK, m)
            self._ota_events()
            await asleep_ms(0 if out else (50 if nxt is None else min(nxt, 5)))

    def _on_tel(self, mac, mtype, obj, msgid):
        self.counters["tel_rx"] += 1
        n = self._heard(mac, obj)
        # a node repeats an unacknowledged message with the same (boot, q) (docs/roles.md): one that is
        # not recognised by the link's dedup (new link sequence) is dropped here; the ACK still goes back
        boot = obj.get("boot") if isinstance(obj, dict) else None
        q = obj.get("q") if isinstance(obj, dict) else None
        seen = n.get("tq")
        if isinstance(q, int) and seen is not None and seen[0] == boot and q in seen[1]:
            self.counters["tel_dup"] += 1
            return self._ack_result(mac)
        self.up.send({"t": "tel", "from": mac_hex(mac), "d": obj, "rssi": n["rssi"]})
        if isinstance(q, int):
            if seen is None or seen[0] != boot:
                seen = n["tq"] = [boot, []]
            seen[1].append(q)
            if len(seen[1]) > TEL_SEEN:
                seen[1].pop(0)
        return self._ack_result(mac)

    def _on_evt(self, mac, mtype, obj, msgid):
        return self._forward(mac, obj, "evt_rx", "evt")

    def _on_hb(self, mac, mtype, obj, msgid):
        return self._forward(mac, obj, "hb_rx", "nhb")

    def _forward(self, mac, obj, counter, t):
        """Count the message, note the node was heard, pass it to the host; the result for its ACK."""
        self.counters[counter] += 1
        n = self._heard(mac, obj)
        self.up.send({"t": t, "from": mac_hex(mac), "d": obj, "rssi": n["rssi"]})
        return self._ack_result(mac)

    def _on_join(self, mac, *rest):
        # a (re)paired node has a new key: queued commands are sent afresh, not repeated frame for frame
        cmd = self.cq.first(mac)
        if cmd is not None:
            cmd.pop("tx", None)
        n = self._node(mac)
        n["last"] = self.clock()
        self.up.send({"t": "join", "from": mac_hex(mac)})
        ts = self.epoch_ms()
        if ts is not None:
            try:
                self.link.submit(mac, T_TIME_SYNC, {"ts": ts}, ack=False)
            except Exception:
                pass

    # ------------------------------------------------------------------ host -> gateway
    def _res(self, cid, ok, **kw):
        m = {"t": "res", "id": cid, "ok": ok}
        for k in kw:
            m[k] = kw[k]
        self.up.send(m)

    def on_host(self, msg):
        """Uplink callback for host messages other than ack/hello/hb; False = unknown type."""
        if msg["t"] != "cmd":
            return False
        self.counters["host_cmds"] += 1
        cid = msg.get("id")
        op = msg.get("op")
        args = msg.get("a")
        if args is None:
            args = {}
        if not isinstance(cid, int) or not 0 <= cid <= 0xFFFF or not isinstance(op, str) or not isinstance(args, dict):
            self.counters["bad_cmd"] += 1
            self._res(cid if isinstance(cid, int) else None, False, err="bad_cmd")
            return True
        to = msg.get("to")
        if to is None:
            self._gw_cmd(cid, op, args)
        else:
            self._node_cmd(cid, to, op, args, msg.get("ttl"))
        return True

    def _gw_cmd(self, cid, op, a):
        if op == "ping":
            self._res(cid, True, r={"pong": a.get("n"), "up": self.uptime_s()})
        elif op == "time_sync":
            ts = a.get("ts")
            if not isinstance(ts, int) or ts < 0:
                self._res(cid, False, err="bad_args")
                return
            self.set_time(ts)
            self._res(cid, True, r={"ts": self.epoch_ms(), "sent": self.broadcast_time()})
        elif op == "pair_begin":
            secs = a.get("s", 60)
            if not isinstance(secs, int) or not 0 < secs <= 3600:
                self._res(cid, False, err="bad_args")
                return
            self._res(cid, True, r={"open": secs})
            self.permit_join(secs)
        elif op == "pair_end":
            self._res(cid, True, r={"open": 0})
            self.permit_join(0)
        elif op == "peers":
            off = a.get("o", 0)
            if not isinstance(off, int) or off < 0:
                self._res(cid, False, err="bad_args")
                return
            page = self.peers(off, PEERS_PAGE)
            if off + PEERS_PAGE < len(self.nodes):
                self._res(cid, True, r=page, more=off + PEERS_PAGE)
            else:
                self._res(cid, True, r=page)
        elif op == "status":
            self._res(cid, True, r=self.status())
        elif op in OTA_OPS and self.ota_box is not None:
            self._ota_cmd(cid, op, a)
        elif op == "forget":
            try:
                mac = mac_bytes(a.get("mac"))
            except ValueError:
                self._res(cid, False, err="bad_args")
                return
            self.nodes.pop(mac, None)
            try:
                self.link.forget(mac)
            except Exception:
                pass
            self._res(cid, True)
        else:
            self.counters["unknown_op"] += 1
            self._res(cid, False, err="unknown_op")

    def _node_cmd(self, cid, to, op, args, ttl_s):
        try:
            mac = mac_bytes(to)
        except ValueError:
            self.counters["bad_cmd"] += 1
            self._res(cid, False, err="bad_mac")
            return
        self.counters["node_cmds"] += 1
        ttl = int(ttl_s) * 1000 if isinstance(ttl_s, int) and ttl_s > 0 else None
        cmd = {"id": cid, "to": mac, "op": op, "a": args}
        evicted = self.cq.put(mac, cmd, self.clock(), ttl)
        for old in evicted:
            self.counters["cmds_overflow"] += 1
            self._res(old["id"], False, err="queue_full", **{"from": mac_hex(old["to"])})
        n = self.nodes.get(mac)
        if n is not None and n["sleep"] and not self._awake(n):
            self.counters["cmds_queued"] += 1
            self.up.send({"t": "cmd_state", "id": cid, "state": "queued", "from": to})
        self._kick(mac)

    # ------------------------------------------------------------------ join window
    def permit_join(self, secs):
        """Open the join window for secs (0 closes it) and tell the host: {"t": "pj", "open": secs}."""
        self.link.permit_join(secs)
        self._pj_until = ticks_add(self.clock(), secs * 1000) if secs > 0 else None
        self.up.send({"t": "pj", "open": secs})

    def pj_left(self):
        """Seconds the join window stays open (rounded up), 0 when closed."""
        if self._pj_until is None:
            return 0
        left = ticks_diff(self._pj_until, self.clock())
        return (left + 999) // 1000 if left > 0 else 0

    # ------------------------------------------------------------------ command delivery
    def _awake(self, n):
        if not n["sleep"]:
            return True
        return ticks_diff(self.clock(), n["last"]) < self.awake_ms

    def _kick(self, mac):
        if self._busy.get(mac):
            return
        n = self.nodes.get(mac)
        if n is not None and not self._awake(n):
            return
        self._busy[mac] = True
        try:
            asyncio.create_task(self._drain(mac))
        except Exception:
            self._busy.pop(mac, None)

    async def _drain(self, mac):
        try:
            while True:
                self._report_expired()
                cmd = self.cq.first(mac)
                if cmd is None:
                    return
                try:
                    tx = cmd.get("tx")
                    if tx is not None:
                        # tried before without an ACK: repeat the SAME link message, so a node that
                        # applied it (and only its ACK got lost) answers from its dedup cache
                        r = await self.link.resend(tx)
                    else:
                        r = await self.link.send(mac, T_COMMAND, {"op": cmd["op"], "a": cmd["a"]},
                                                 msgid=cmd["id"])
                except LinkError as e:
                    if e.status is None:
                        # no ACK: keep the command (it expires after its ttl) and wait for the node
                        cmd["tx"] = getattr(e, "tx", None)
                        n = self._node(mac)
                        if not n.get("unreachable"):
                            n["unreachable"] = True
                            self.counters["cmds_queued"] += 1
                            self.up.send({"t": "cmd_state", "id": cmd["id"], "state": "queued",
                                          "from": mac_hex(mac)})
                        return
                    self.cq.remove_first(mac)
                    self.counters["cmds_failed"] += 1
                    err = "error" if e.status == ST_ERROR else ("unhandled" if e.status == ST_UNHANDLED else "status_%s" % e.status)
                    self._res(cmd["id"], False, err=err, r=e.result, **{"from": mac_hex(mac)})
                    continue
                except Exception as e:
                    self.cq.remove_first(mac)
                    self.counters["cmds_failed"] += 1
                    self._res(cmd["id"], False, err=str(e), **{"from": mac_hex(mac)})
                    continue
                self.cq.remove_first(mac)
                n = self._node(mac)
                n["unreachable"] = False
                ok = True
                if isinstance(r, dict) and r.get("ok") is False:
                    ok = False
                self.counters["cmds_ok" if ok else "cmds_failed"] += 1
                self._res(cmd["id"], ok, r=r, **{"from": mac_hex(mac)})
        finally:
            self._busy.pop(mac, None)

    # ------------------------------------------------------------------ reports
    def peers(self, off=0, count=None):
        """The known nodes in MAC order (stable across pages), `count` of them from `off` (all: None)."""
        out = []
        now = self.clock()
        macs = sorted(self.nodes)
        for mac in macs[off:] if count is None else macs[off:off + count]:
            n = self.nodes[mac]
            out.append({"mac": mac_hex(mac), "rssi": n["rssi"], "fw": n["fw"], "role": n["role"],
                        "boot": n["boot"], "sleep": n["sleep"], "ago": ticks_diff(now, n["last"]) // 1000,
                        "q": self.cq.pending(mac), "bd": n.get("bd"), "bat": n.get("bat"),
                        "app": n.get("app")})
        return out

    def status(self):
        c = dict(self.counters)
        c["crashes"] = self.sup.crashes
        try:
            link = dict(self.link.counters)
        except Exception:
            link = {}
        st = self.up.stats()
        try:  # ESP-NOW registrations actually held by the radio (at most 20: LRU, docs/protocol.md)
            radio = self.link.esp.peer_count()[0]
        except Exception:
            radio = None
        return {"up": self.uptime_s(), "radio_peers": radio, "fw": VERSION, "boot": self.boot, "nodes": len(self.nodes),
                "ring": st["ring"], "ring_cap": st["ring_cap"], "ring_dropped": st["ring_dropped"],
                "cmdq": len(self.cq), "time": self.epoch_ms(), "pj": self.pj_left(), "gw": c, "uplink": st, "link": link,
                "tasks": self.sup.stats(), "impl": native.impl(), "ota": dict(self.ota_box.counters) if self.ota_box is not None else None}

    # ------------------------------------------------------------------ tasks
    def _report_expired(self):
        for cmd in self.cq.expire(self.clock()):
            self.counters["cmds_expired"] += 1
            self._res(cmd["id"], False, err="expired", **{"from": mac_hex(cmd["to"])})

    def housekeeping(self):
        self._report_expired()
        if self._pj_until is not None and not self.pj_left():
            self._pj_until = None
            self.up.send({"t": "pj", "open": 0})   # the join window closed by itself
        for mac in self.cq.destinations():
            n = self.nodes.get(mac)
            if n is None or self._awake(n):
                self._kick(mac)

    async def _housekeeping_task(self):
        last_time = self.clock()
        while self._running:
            self.housekeeping()
            if self.time_every_ms and ticks_diff(self.clock(), last_time) >= self.time_every_ms:
                last_time = self.clock()
                self.broadcast_time()
            await asleep_ms(1000)

    def start(self):
        """Start the gateway's tasks in the running asyncio loop."""
        self.spawn_base()
        self.up.send({"t": "boot", "fw": VERSION, "name": self.cfg.get("name"), "boot": self.boot})
        self.sup.spawn("uplink", self.up.run)
        self.sup.spawn("house", self._housekeeping_task)
        if self.ota_box is not None:
            self.sup.spawn("ota", self._ota_task)
        secs = int(self.opts.get("permit_join_s", 0))
        if secs > 0:
            self.permit_join(secs)

    def stop(self):
        self._running = False
        self.up.stop()
        self.stop_base()

    async def run(self):
        self.start()
        await self.idle()
