# Heap allocated per received frame on the link's receive path (Link.feed -> link.rx), per kind of frame,
# before and after the receiver became an object of its own (issue 9: link.rx.Receiver with constructor
# callbacks instead of a base class of Link with hooks the link sides override), side by side in one run
# on the MicroPython unix port. A gateway link fed pre-built frames from a paired node (HMAC-tagged) on the
# in-memory fake radio (tests/device/test_link_fakeradio.py); gc is disabled while one kind is fed N times
# and gc.mem_alloc() before/after gives the bytes per frame. "before" is the device code of the commit
# before `link: Receiver is an object of its own` (git archive into a temp dir), "after" the working tree.
#
#   python bench/rx_alloc.py [--base REV] [--json]
import json
import os
import sys
import tempfile

KINDS = ("duplicate", "duplicate_ack", "unsequenced", "bad_tag", "stray_ack", "new")

WORKER = r"""
import gc
from test_link_fakeradio import FakeAir, FakeClock, mac
from fieldlink.link import frame as lf
from fieldlink.codec import mpack
from fieldlink.link.gateway_link import GatewayLink
from fieldlink.link.node_link import NodeLink

GW = mac(0xF00)
N1 = mac(1)
KEY = b"0123456789abcdef"
c = FakeClock(1000)
air = FakeAir(c, 1)
gw = GatewayLink(air.radio(GW), GW, clock=c, boot_id=1, pmk=b"P" * 16, beacon_closed_ms=60000)
node = NodeLink(air.radio(N1), N1, clock=c, boot_id=7, pmk=b"P" * 16)
node._adopt(GW, 1, KEY, 1)
gw.add_node(N1, KEY, 1)
gw.on(lf.T_TELEMETRY, lambda s, t, o, m: None)
body = mpack.packb(1)
out = {}


def per_frame(name, frames, n):
    src = bytearray(N1)     # irecv's reused mac buffer
    gw.feed(src, frames[0])
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    for i in range(n):
        gw.feed(src, frames[i % len(frames)])
    b = gc.mem_alloc()
    gc.enable()
    out[name] = (b - a) // n


def frame(t, flags, seq, msgid, body, key):
    return bytearray(lf.build(t, flags, 7, seq, msgid, body, 0, 0, 0, key))


per_frame("duplicate", [frame(lf.T_TELEMETRY, 0, 5, 0, body, KEY)], 200)
per_frame("duplicate_ack", [frame(lf.T_TELEMETRY, lf.F_ACK_REQ, 6, 0, body, KEY)], 200)
per_frame("unsequenced", [frame(lf.T_TELEMETRY, 0, 0, 0, body, KEY)], 200)
per_frame("bad_tag", [frame(lf.T_TELEMETRY, 0, 9, 0, body, b"x" * 16)], 200)
per_frame("stray_ack", [bytearray(lf.build(lf.T_ACK, 0, 1, 0, 77, mpack.packb([0, None]), 0, 0, 0, KEY))], 200)
per_frame("new", [frame(lf.T_TELEMETRY, 0, 100 + i, 0, body, KEY) for i in range(400)], 400)
cn = gw.counters
assert cn["duplicate"] == 401 and cn["bad_auth"] == 201 and cn["stray_ack"] == 201, cn
print("result " + json.dumps(out))
"""


def _measure(root, device_dir, tmp):
    from _bench import result_line, run_micropython

    script = os.path.join(tmp, "rx_alloc_worker.py")
    with open(script, "w") as f:
        f.write("import json\n" + WORKER)
    proc = run_micropython(script, extra_path=[os.path.join(root, "tests", "device"), os.path.join(device_dir, "sim"),
                                               device_dir], heap="4M", timeout=300)
    return result_line(proc, f"bench/rx_alloc.py: worker ({device_dir})")


def main(argv):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _bench import commit_before, device_at

    base = argv[argv.index("--base") + 1] if "--base" in argv else commit_before(
        root, "link: Receiver is an object of its own", "bench/rx_alloc.py")
    with tempfile.TemporaryDirectory(prefix="fl-rxalloc-") as tmp:
        old = os.path.join(tmp, "before")
        os.mkdir(old)
        b = _measure(root, device_at(root, base, old), tmp)
        a = _measure(root, os.path.join(root, "device"), tmp)
    rows = [{"frame": k, "before": b[k], "after": a[k], "ratio": round(a[k] / b[k], 3) if b[k] else None}
            for k in KINDS]
    if "--json" in argv:
        print(json.dumps({"base": base, "rows": rows}, indent=1))
        return 0
    print(f"heap bytes allocated per received frame (gc.mem_alloc(), MicroPython unix port), before = {base}")
    print(f"{'frame':<14} {'before B':>10} {'after B':>10} {'ratio':>7}")
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        print(f"{r['frame']:<14} {r['before']:>10} {r['after']:>10} {ratio:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
