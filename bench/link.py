# Link layer throughput: messages/s through fieldlink.link (node -> gateway, ACKed, HMAC-tagged) on
# the in-memory fake radio (tests/device/test_link_fakeradio.py) with a virtual clock, so the numbers
# are the CPU cost of the link layer itself, plus the share of frames that are retransmissions under
# 20 % loss. CPython and MicroPython side by side (the same code runs in a `micropython` child).
#
#   python bench/link.py [--quick] [--json]
#
# The virtual air (device/sim UDP hub, separate processes) row is printed as "n/a" until
# host/fieldlink_host/virtual.py exists.
# ruff: noqa: UP031
import sys

IS_MPY = sys.implementation.name == "micropython"
import time  # noqa: E402

if IS_MPY:
    def _now():
        return time.ticks_us()

    def _secs(t0, t1):
        return time.ticks_diff(t1, t0) / 1e6
else:
    def _now():
        return time.perf_counter()

    def _secs(t0, t1):
        return t1 - t0


def scenario(n, loss, size, seed=7):
    from fieldlink import linkframe as lf
    from fieldlink.link import GatewayLink, LinkError, NodeLink
    from fieldlink.peers import SEC_AUTH
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


def _run_micropython(quick):
    import json
    import os
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join([os.path.join(root, "tests", "device"), os.path.join(root, "device"),
                                          os.path.join(root, "device", "sim"), ".frozen"])
    cmd = ["micropython", "-X", "heapsize=32M", os.path.abspath(__file__), "--worker"] + (["--quick"] if quick else [])
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
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
    if "--json" in argv:
        print(json.dumps({"cpython": cp, "micropython": mp}))
        return 0
    print("%-34s %12s %12s %8s %14s %14s" % ("scenario", "CPython m/s", "MPy m/s", "ratio",
                                              "retries CPy", "retries MPy"))
    for k in cp:
        a, b = cp[k], mp[k]
        print("%-34s %12.0f %12.0f %8.1f %13.1f%% %13.1f%%" % (
            k, a["msgs_s"], b["msgs_s"], a["msgs_s"] / b["msgs_s"], 100 * a["retry_share"],
            100 * b["retry_share"]))
    print("%-34s %12s %12s" % ("virtual air (UDP hub), 20% loss", "n/a", "n/a"))
    print("(retries = share of transmitted frames that were retransmissions; a lost fragment resends all fragments)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
