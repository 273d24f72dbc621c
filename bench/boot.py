# Heap after boot, per role, before and after the layout change of issue 9, side by side in one run:
# each role is built from a board config and started on the MicroPython unix port (virtual board
# radio, uplink on an idle pseudo-terminal), its tasks run 1 s, then gc.collect() and gc.mem_alloc() give the heap
# in use. "before" is the device code of the commit before `layout: moved device package into
# subpackages` (git archive into a temp dir), "after" the working tree. The last column is what the
# gateway's idle uplink loop allocates per second (gc disabled while it runs alone for 1 s).
#
#   python bench/boot.py [--base REV] [--json]
import json
import os
import sys
import tempfile

WORKER = r"""
import asyncio
import gc
import json
import sys

role, api, cfgpath, store, port = sys.argv[1:6]
with open(cfgpath) as f:
    cfg = json.load(f)
if api == "start":
    start = __import__("fieldlink.%s.start" % role, None, None, ("start",)).start
    obj = start(cfg, store, None, None, ".", port)
else:  # before the layout change: the builders lived in fieldlink.main
    import fieldlink.main as m
    if role == "gateway":
        obj = m.build_gateway(cfg, store, port)
    else:
        obj = m.build_node(cfg, store, None, rules=m.make_rules(cfg, store, "."))


async def boot():
    obj.start()
    await asyncio.sleep_ms(1000)
    obj.stop()
    await asyncio.sleep_ms(50)

asyncio.run(boot())
gc.collect()
heap = gc.mem_alloc()
idle = -1
if role == "gateway":
    up = obj.up

    async def uplink_only():
        t = asyncio.create_task(up.run())
        await asyncio.sleep_ms(100)
        gc.collect()
        gc.disable()
        a = gc.mem_alloc()
        await asyncio.sleep_ms(1000)
        b = gc.mem_alloc()
        gc.enable()
        up.stop()
        await t
        return b - a
    idle = asyncio.run(uplink_only())
print("result " + json.dumps({"heap": heap, "idle_alloc_per_s": idle}))
"""


def _measure(root, device_dir, role, api, cfgpath, tmp):
    from _bench import result_line, run_micropython

    store = tempfile.mkdtemp(prefix="store-", dir=tmp)
    script = os.path.join(tmp, "boot_worker.py")
    with open(script, "w") as f:
        f.write(WORKER)
    master, slave = os.openpty()  # the uplink port: a serial line with nobody sending (idle host)
    try:
        import tty

        tty.setraw(slave)
        port = os.ttyname(slave)
        proc = run_micropython(script, [role, api, cfgpath, store, port],
                               extra_path=[os.path.join(device_dir, "sim"), device_dir], heap="2M", timeout=300)
    finally:
        os.close(master)
        os.close(slave)
    return result_line(proc, f"bench/boot.py: {role} ({api})")


def main(argv):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(root, "host"))
    from fieldlink_host.boards import load_board

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _bench import commit_before, device_at

    base = argv[argv.index("--base") + 1] if "--base" in argv else commit_before(
        root, "layout: moved device package", "bench/boot.py")
    with tempfile.TemporaryDirectory(prefix="fl-boot-") as tmp:
        old = os.path.join(tmp, "before")
        os.mkdir(old)
        old_device = device_at(root, base, old)
        rows = []
        for role, board in (("gateway", "sim-gateway"), ("node", "sim-node")):
            cfgpath = os.path.join(tmp, board + ".json")
            with open(cfgpath, "wb") as f:
                f.write(load_board(board).device_json())
            b = _measure(root, old_device, role, "main", cfgpath, tmp)
            a = _measure(root, os.path.join(root, "device"), role, "start", cfgpath, tmp)
            rows.append({"role": role, "board": board, "heap_before": b["heap"], "heap_after": a["heap"],
                         "ratio": round(a["heap"] / b["heap"], 3),
                         "uplink_idle_alloc_per_s_before": b["idle_alloc_per_s"],
                         "uplink_idle_alloc_per_s_after": a["idle_alloc_per_s"]})
    if "--json" in argv:
        print(json.dumps({"base": base, "rows": rows}, indent=1))
        return 0
    print(f"heap in use after boot (gc.mem_alloc(), MicroPython unix port), before = {base}")
    print(f"{'role':<8} {'board':<12} {'before B':>12} {'after B':>12} {'ratio':>7} {'idle B/s before':>18} "
          f"{'idle B/s after':>18}")
    for r in rows:
        idle_b = r["uplink_idle_alloc_per_s_before"]
        idle_a = r["uplink_idle_alloc_per_s_after"]
        ib = "-" if idle_b < 0 else str(idle_b)
        ia = "-" if idle_a < 0 else str(idle_a)
        print(f"{r['role']:<8} {r['board']:<12} {r['heap_before']:>12} {r['heap_after']:>12} {r['ratio']:>6.2f}x "
              f"{ib:>18} {ia:>18}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
