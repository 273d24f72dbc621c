# OTA chunk transfer rows for bench/ota.py (docs/protocol.md "OTA chunk transfer"):
#
#   efficiency        payload bytes / air bytes of a 64 KB transfer at 0 % and 20 % loss (each way), on the
#                     seeded in-memory channel of tests/device/test_ota_transfer.py (real authenticated link
#                     frames, counted bytes: a protocol property, not a timing), plus resent data frames per
#                     lost frame at 20 % loss
#   KB/s virtual air  the same transfer between two board processes over the device/sim UDP air hub (real
#                     GatewayLink/NodeLink, Link.send_unseq), loss set at the hub; the sim has no RF timing,
#                     so this is CPU + local UDP + the protocol's timeouts, not airtime
#
#   python bench/ota_transfer.py [--quick] [--json]      (bench/ota.py prints these rows too)
# ruff: noqa: UP031
import sys

SIZE = 65536


def channel_row(loss, size=SIZE, seeds=(1, 2, 3)):
    from fieldlink.ota import transfer_tx as ttx
    from test_ota_transfer import Run, image
    eff, resent, lost = [], 0, 0
    for seed in seeds:
        run = Run(image(size, seed), loss=loss, seed=seed).complete()
        assert run.s.ok and run.s.state == ttx.DONE
        eff.append(size / run.chan.air_bytes)
        resent += run.s.counters["data_resent"]
        lost += run.chan.lost
    return {"efficiency": sum(eff) / len(eff), "resent": resent, "lost": lost,
            "resent_per_lost": resent / lost if lost else 0.0}


# ------------------------------------------------------------------------------------------ virtual air
class _RamStore:
    """The part of fieldlink.ota.mailbox.ImageStore the mailbox uses, in RAM."""

    def __init__(self, blob):
        self.blob = blob

    def complete(self):
        return True

    def ident(self):
        return 0x0BE7C4

    def blob_size(self):
        return len(self.blob)

    def read(self, off, n):
        return self.blob[off:off + n]


class _RamSink:
    def __init__(self):
        self.n = 0

    def begin(self, sid, cid, size, chunk):
        self.size = size
        return 0

    def write(self, off, data):
        self.n += len(data)

    def finish(self):
        return self.n == self.size, None


def air_board():
    """vboard entry (--entry ota_transfer:air_board). BENCH_ROLE gw|node, BENCH_MAC / BENCH_PEER (hex),
    BENCH_SIZE. The gateway pushes a BENCH_SIZE image to the node and prints "result {json}"."""
    import json
    import os

    import espnow
    import network
    from _bench import now, secs
    from fieldlink.link import frame as lf
    from fieldlink.link.gateway_link import GatewayLink
    from fieldlink.link.node_link import NodeLink
    from fieldlink.link.peers import SEC_AUTH
    from fieldlink.ota.mailbox import Mailbox
    from fieldlink.ota.transfer_rx import Receiver
    from fieldlink.runtime.clock import asleep_ms
    try:
        import asyncio
    except ImportError:  # pragma: no cover
        import uasyncio as asyncio

    role = os.getenv("BENCH_ROLE")
    me = bytes.fromhex(os.getenv("BENCH_MAC"))
    peer = bytes.fromhex(os.getenv("BENCH_PEER"))
    size = int(os.getenv("BENCH_SIZE") or "65536")
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    wlan.config(channel=1)
    from fieldlink.link.radio import RXBUF
    from fieldlink.ota.transfer_node import ota_credit
    esp = espnow.ESPNow()
    esp.config(rxbuf=RXBUF)     # as fieldlink.link.radio.radio() does
    esp.active(True)
    pmk, key = b"P" * 16, b"K" * 16
    if role == "node":
        link = NodeLink(esp, me, wlan=wlan, pmk=pmk, boot_id=2, lost_ms=0, idle_ms=1)
        link._adopt(peer, 1, key, SEC_AUTH)
        rx = Receiver(_RamSink())
        rx.credit = ota_credit(esp)

        def h(src, t, obj, mid):
            r = rx.on_msg(obj)
            if r is not None:
                link.send_unseq(src, lf.T_OTA_CHUNK, r)

        link.on(lf.T_OTA_CHUNK, h)
        print("ready")
        asyncio.run(link.run())
        return
    link = GatewayLink(esp, me, wlan=wlan, pmk=pmk, boot_id=1, beacon_closed_ms=10 ** 6, idle_ms=1)
    link.add_node(peer, key, SEC_AUTH, False)
    box = Mailbox(_RamStore(bytes((i * 7) & 0xFF for i in range(size))))
    link.on(lf.T_OTA_CHUNK, lambda src, t, obj, mid: box.on_msg(src, obj, link.clock()))

    async def gw_main():
        asyncio.create_task(link.run())
        box.push([peer])
        t0 = now()
        box.heard(peer, link.clock())
        e = box.entries[peer]
        while e.state == "updating":
            out, nxt = box.poll(link.clock())
            for mac, m in out:
                link.send_unseq(mac, lf.T_OTA_CHUNK, m)
            if e.sender is not None and e.sender.state == 6:     # stalled: the bench keeps going
                box.heard(peer, link.clock())
            await asleep_ms(0 if out else 1)
        dt = secs(t0, now())
        c = e.sender.counters
        print("result " + json.dumps({"state": e.state, "secs": dt, "bytes": e.sender.size,
                                      "data_tx": c["data_tx"], "resent": c["data_resent"]}))
        link.stop()

    asyncio.run(gw_main())


def air_row(runtime, loss, size):
    import json
    import tempfile

    from _bench import air_board
    from fieldlink_host.virtual import start_air

    gw_mac, node_mac = "02000000f000", "020000000001"

    def board(tmp, name, role, mac, peer, hub):
        env = {"BENCH_ROLE": role, "BENCH_MAC": mac, "BENCH_PEER": peer, "BENCH_SIZE": str(size)}
        return air_board(tmp, name, runtime, "ota_transfer:air_board", mac, hub, env)

    hub = start_air(seed=11, loss=loss)
    with tempfile.TemporaryDirectory() as tmp:
        node = board(tmp, "node", "node", node_mac, gw_mac, hub)
        gw = board(tmp, "gw", "gw", gw_mac, node_mac, hub)
        try:
            node.start()
            node.wait_for("^ready$", timeout=30)
            gw.start()
            line = gw.wait_for("^result ", timeout=300)
        finally:
            gw.stop()
            node.stop()
            hub.stop()
    r = json.loads(line[len("result "):])
    if r["state"] != "transferred":
        raise RuntimeError("virtual air transfer ended %s" % r["state"])
    r["kbps"] = r["bytes"] / 1024 / r["secs"]
    return r


def transfer_rows(quick=False):
    """(keys, rows) for bench/ota.py; rows are (name, value, note)."""
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for p in ("tests/device", "device/sim", "device", "bench"):
        q = os.path.join(root, p)
        if q not in sys.path:
            sys.path.insert(0, q)
    c0 = channel_row(0.0)
    c20 = channel_row(0.2)
    size = 16384 if quick else SIZE
    air = {}
    for rt in ("micropython", "cpython"):
        for loss in (0.0, 0.2):
            air[(rt, loss)] = air_row(rt, loss, size)
    keys = {"efficiency": round(c0["efficiency"], 4), "efficiency_loss20": round(c20["efficiency"], 4),
            "resent_per_lost_loss20": round(c20["resent_per_lost"], 3),
            "kbps_virtual_air": round(air[("micropython", 0.0)]["kbps"], 1),
            "kbps_virtual_air_loss20": round(air[("micropython", 0.2)]["kbps"], 1),
            "kbps_virtual_air_cpython": round(air[("cpython", 0.0)]["kbps"], 1),
            "kbps_virtual_air_loss20_cpython": round(air[("cpython", 0.2)]["kbps"], 1)}
    rows = [("efficiency 0% loss", "%.1f %%" % (100 * c0["efficiency"]), "payload / air bytes, 64 KB, >= 80 % required"),
            ("efficiency 20% loss", "%.1f %%" % (100 * c20["efficiency"]),
             "resent %d data frames for %d lost frames (%.2fx, < 1.5x required)" % (c20["resent"], c20["lost"],
                                                                                  c20["resent_per_lost"]))]
    for (rt, loss), r in air.items():
        rows.append(("virtual air %s %d%% loss" % (rt, int(loss * 100)), "%.1f KB/s" % r["kbps"],
                     "%d KB in %.1f s, %d data frames, %d resent" % (r["bytes"] // 1024, r["secs"], r["data_tx"],
                                                                    r["resent"])))
    return keys, rows


def main(argv):
    import json
    keys, rows = transfer_rows("--quick" in argv)
    if "--json" in argv:
        print(json.dumps(keys, sort_keys=True))
        return 0
    print_rows(rows)
    return 0


def print_rows(rows):
    print("%-32s %12s  %s" % ("transfer row", "value", "note"))
    for name, v, note in rows:
        print("%-32s %12s  %s" % (name, v, note))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
