# Link layer throughput: messages/s through fieldlink.link.core (node -> gateway, ACKed, HMAC-tagged) on
# the in-memory fake radio (tests/device/test_link_fakeradio.py) with a virtual clock, so the numbers
# are the CPU cost of the link layer itself, plus the share of frames that are retransmissions under
# 20 % loss. CPython and MicroPython side by side (the same code runs in a `micropython` child).
#
#   python bench/link.py [--quick] [--json]
#
# The "virtual air" rows run the same link over the device/sim UDP air hub instead: a gateway board and
# a node board, each its own process (fieldlink_host.virtual.VirtualBoard, entry air_board() below),
# 0 % and 20 % loss on every frame (data and ACKs) set at the hub, 8 sender tasks on the node for a
# fixed wall-clock window (4 s, 2 s at 0 %; halved with --quick; ~10 s for both rows). Boards run under
# CPython (python vboard.py) and under micropython; the hub is the CPython one. The sim has no RF
# timing: every frame is a UDP round trip through the hub (sync send waits for the hub's MAC-level ack),
# so at 0 % loss the rate measures CPU + local UDP, not airtime; at 20 % loss it is set by the retry
# backoff (8 in flight / mean ACK latency), which is why both runtimes come out alike there.
# ruff: noqa: UP031
import sys

from _bench import now as _now
from _bench import secs as _secs


def scenario(n, loss, size, seed=7):
    from fieldlink.link import frame as lf
    from fieldlink.link.core import LinkError
    from fieldlink.link.gateway_link import GatewayLink
    from fieldlink.link.node_link import NodeLink
    from fieldlink.link.peers import SEC_AUTH
    from test_link_fakeradio import FakeAir, FakeClock, mac
    c = FakeClock(1000)
    air = FakeAir(c, seed, loss)
    gwm, nm = mac(0xF00), mac(1)
    pmk = b"P" * 16
    gw = GatewayLink(air.radio(gwm), gwm, clock=c, boot_id=1, pmk=pmk, beacon_closed_ms=10**6, max_tries=10)
    node = NodeLink(air.radio(nm), nm, clock=c, boot_id=2, pmk=pmk, max_tries=10)
    key = b"K" * 16
    node._adopt(gwm, 1, key, SEC_AUTH)
    gw.add_node(nm, key, SEC_AUTH, False)
    got = [0]

    def h(src, t, obj, mid):
        got[0] += 1

    gw.on(lf.T_TELEMETRY, h)
    payload = {"v": bytes(size)} if size else {"temp": 21.5, "hum": 48, "seq": 1}
    txs = []
    t0 = _now()
    i = 0
    while i < n or any(not t.done for t in txs[-8:]):
        if i < n:
            try:
                txs.append(node.submit(gwm, lf.T_TELEMETRY, payload))
                i += 1
                continue
            except LinkError:
                pass
        node.service()
        gw.service()
        c.advance(1)
    dt = _secs(t0, _now())
    frames = node.counters["tx_frames"]
    nfr = len(txs[0].frames)
    retry_frames = node.counters["retries"] * nfr
    return {"msgs_s": got[0] / dt, "delivered": got[0], "retry_share": retry_frames / frames if frames else 0.0,
            "give_up": node.counters["give_up"]}


def run_all(quick=False):
    n = 200 if quick else 1000
    return {
        "fake 0% loss, small": scenario(n, 0.0, 0),
        "fake 20% loss, small": scenario(n, 0.2, 0),
        "fake 0% loss, 1500 B (7 frags)": scenario(n // 5, 0.0, 1500),
        "fake 20% loss, 1500 B (7 frags)": scenario(n // 5, 0.2, 1500),
    }


# ------------------------------------------------------------------------------------------ virtual air
def air_board():
    """vboard entry (--entry link:air_board). BENCH_ROLE gw|node, BENCH_MAC / BENCH_PEER (hex),
    BENCH_SECS (node: sending window), BENCH_SIZE (payload bytes, 0 = small map). The node prints one
    line "result {json}" and exits; the gateway prints "ready", then "gw N" (messages received)."""
    import asyncio
    import json
    import os

    import espnow
    import network
    from fieldlink.link import frame as lf
    from fieldlink.link.core import LinkError
    from fieldlink.link.gateway_link import GatewayLink
    from fieldlink.link.node_link import NodeLink
    from fieldlink.link.peers import SEC_AUTH
    from fieldlink.runtime.clock import asleep_ms as sleep_ms

    role = os.getenv("BENCH_ROLE")
    me = bytes.fromhex(os.getenv("BENCH_MAC"))
    peer = bytes.fromhex(os.getenv("BENCH_PEER"))
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    wlan.config(channel=1)
    esp = espnow.ESPNow()
    esp.active(True)
    pmk, key = b"P" * 16, b"K" * 16
    if role == "gw":
        link = GatewayLink(esp, me, wlan=wlan, pmk=pmk, boot_id=1, beacon_closed_ms=10 ** 6, idle_ms=1)
        link.add_node(peer, key, SEC_AUTH, False)
        got = [0]

        def h(src, t, obj, mid):
            got[0] += 1

        link.on(lf.T_TELEMETRY, h)

        async def report():
            print("ready")
            while True:
                await sleep_ms(250)
                print("gw %d" % got[0])

        async def gw_main():
            asyncio.create_task(report())
            await link.run()

        asyncio.run(gw_main())
        return
    secs = float(os.getenv("BENCH_SECS") or "4")
    size = int(os.getenv("BENCH_SIZE") or "0")
    link = NodeLink(esp, me, wlan=wlan, pmk=pmk, boot_id=2, max_tries=10, lost_ms=0, idle_ms=1)
    link._adopt(peer, 1, key, SEC_AUTH)
    payload = {"v": bytes(size)} if size else {"temp": 21.5, "hum": 48, "seq": 1}
    res = {"ok": 0, "fail": 0}
    state = {"t0": None, "run": True}

    async def sender():
        while state["run"]:
            try:
                await link.send(peer, lf.T_TELEMETRY, payload)
                res["ok"] += 1
            except LinkError:
                res["fail"] += 1

    async def node_main():
        asyncio.create_task(link.run())
        t0 = _now()
        for _ in range(8):
            asyncio.create_task(sender())
        while _secs(t0, _now()) < secs:
            await sleep_ms(20)
        # what happened inside the window; the messages still in flight are abandoned
        state["run"] = False
        c = link.counters
        out.update({"ok": res["ok"], "fail": res["fail"], "secs": _secs(t0, _now()), "tx_frames": c["tx_frames"],
                    "retries": c["retries"], "give_up": c["give_up"]})
        link.stop()

    out = {"frames_per_msg": 1 if size == 0 else -(-size // 200)}
    asyncio.run(node_main())
    print("result " + json.dumps(out))


def air_scenario(runtime, secs, loss=0.2, size=0):
    """Gateway + node boards on the UDP air hub; returns msgs/s (ACKed at the node) and retry share."""
    import json
    import re
    import tempfile

    from _bench import air_board
    from fieldlink_host.virtual import start_air

    gw_mac, node_mac = "02000000f000", "020000000001"

    def board(tmp, name, role, mac, peer, extra):
        env = {"BENCH_ROLE": role, "BENCH_MAC": mac, "BENCH_PEER": peer, "BENCH_SECS": str(secs),
               "BENCH_SIZE": str(size)}
        return air_board(tmp, name, runtime, "link:air_board", mac, extra, env)

    hub = start_air(seed=7, loss=loss)
    with tempfile.TemporaryDirectory() as tmp:
        gw = board(tmp, "gw", "gw", gw_mac, node_mac, hub)
        node = board(tmp, "node", "node", node_mac, gw_mac, hub)
        try:
            gw.start()
            gw.wait_for("^ready$", timeout=20)
            node.start()
            line = node.wait_for("^result ", timeout=secs + 30)
            gw_line = gw.wait_for(lambda ln: ln.startswith("gw "), timeout=5, since=gw.mark())
        finally:
            node.stop()
            gw.stop()
            hub.stop()
    r = json.loads(line[len("result "):])
    m = re.match(r"gw (\d+)$", gw_line)
    frames = r["tx_frames"]
    # ok/fail: ACKed / given-up messages by the end of the window (those in flight then are not counted)
    return {"msgs_s": r["ok"] / r["secs"], "delivered": int(m.group(1)) if m else -1, "acked": r["ok"],
            "retry_share": r["retries"] * r["frames_per_msg"] / frames if frames else 0.0,
            "give_up": r["give_up"], "secs": r["secs"]}


def _run_micropython(quick):
    import json
    import os

    from _bench import run_micropython
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = run_micropython(os.path.abspath(__file__), ["--worker"] + (["--quick"] if quick else []),
                        extra_path=[os.path.join(root, "tests", "device"), os.path.join(root, "device", "sim")],
                        heap="32M", timeout=900)
    if p.returncode != 0:
        raise RuntimeError("micropython worker failed:\n" + p.stdout + p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv):
    import json
    import os
    quick = "--quick" in argv
    if "--worker" in argv:
        print(json.dumps(run_all(quick)))
        return 0
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for p in ("device/sim", "device", "tests/device"):
        sys.path.insert(0, os.path.join(root, p))
    cp = run_all(quick)
    mp = _run_micropython(quick)
    secs = 2.0 if quick else 4.0
    air = {}
    for name, loss, w in (("virtual air (UDP hub), 0% loss", 0.0, secs / 2),
                          ("virtual air (UDP hub), 20% loss", 0.2, secs)):
        air[name] = {"cpython": air_scenario("cpython", w, loss), "micropython": air_scenario("micropython", w, loss)}
    if "--json" in argv:
        print(json.dumps({"cpython": cp, "micropython": mp, "virtual_air": air}))
        return 0
    print("%-34s %12s %12s %8s %14s %14s" % ("scenario", "CPython m/s", "MPy m/s", "ratio",
                                              "retries CPy", "retries MPy"))
    for k in cp:
        a, b = cp[k], mp[k]
        print("%-34s %12.0f %12.0f %8.1f %13.1f%% %13.1f%%" % (
            k, a["msgs_s"], b["msgs_s"], a["msgs_s"] / b["msgs_s"], 100 * a["retry_share"],
            100 * b["retry_share"]))
    for k, v in air.items():
        a, b = v["cpython"], v["micropython"]
        print("%-34s %12.0f %12.0f %8.1f %13.1f%% %13.1f%%" % (
            k, a["msgs_s"], b["msgs_s"], a["msgs_s"] / b["msgs_s"], 100 * a["retry_share"], 100 * b["retry_share"]))
    print("(virtual air: gateway + node board processes and the hub on this machine, 8 messages in flight,"
          " ACKed CPy/MPy: %s; no RF timing, so 0%% loss measures CPU + local UDP, not airtime; under 20%%"
          " loss the retry backoff (50 ms doubling) sets the rate: mean ACK latency = 8 / rate, %.0f / %.0f ms)"
          % (", ".join("%d/%d" % (v["cpython"]["acked"], v["micropython"]["acked"]) for v in air.values()),
             8000 / a["msgs_s"], 8000 / b["msgs_s"]))
    print("(retries = share of transmitted frames that were retransmissions; a lost fragment resends all fragments)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
