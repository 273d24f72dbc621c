# ruff: noqa: UP031 - MicroPython code: %-formatting on purpose
# Virtual-board entry (vboard --entry multinode_entry:main) for tests/system/test_farm_air_scale.py:
# MANY real nodes in ONE micropython process. Each node is its own simboard board (own MAC, own WLAN,
# own ESP-NOW radio with its own UDP socket on the air hub) running the real fieldlink.link.node_link.NodeLink +
# fieldlink.node.role.Node (synthetic sensor, no relays, state in memory), all in one asyncio loop.
# Environment: MULTI_BASE (index of the first node, MAC 02:00:00:00:hi:lo), MULTI_COUNT (nodes),
# MULTI_INTERVAL_MS (sensor interval), MULTI_IDLE_MS (link loop idle sleep).
# It prints "multinode: started N" once every radio is registered, then every 5 s
# "multinode: paired P/N tel T fail F".
import asyncio
import os


def _env(name, default):
    v = os.getenv(name)
    return int(v) if v else default


def make_node(i, interval_ms, idle_ms):
    import espnow
    import network
    import simboard
    from fieldlink.link.node_link import NodeLink
    from fieldlink.link.radio import link_kw
    from fieldlink.node.role import Node
    from fieldlink.node.sensors import SensorManager
    from fieldlink.runtime.state import State

    mac = bytes([2, 0, 0, 0, (i >> 8) & 0xFF, i & 0xFF])
    b = simboard.new_board(mac=mac, air=os.getenv("FIELDLINK_AIR"))
    prev = simboard.select(b)       # WLAN() and ESPNow() bind to the selected board when created
    try:
        wlan = network.WLAN(network.STA_IF)
        wlan.active(True)
        esp = espnow.ESPNow()
        esp.active(True)
    finally:
        simboard.select(prev)
    cfg = {"name": "multi-%d" % i, "role": "node",
           "sensors": [{"name": "syn", "driver": "synthetic", "interval_ms": interval_ms, "seed": i,
                        "t_mean": 20.0 + (i % 10)}],
           "options": {"telemetry_batch": 1, "batch_ms": interval_ms, "heartbeat_s": 120, "tick_ms": 250,
                       "join_timeout_ms": 4000, "join_backoff_max_ms": 4000}}
    kw = link_kw(cfg, wlan, None)       # the same link options fieldlink.main gives a real node
    link = NodeLink(esp, mac, idle_ms=idle_ms, seed=i, **kw)
    return Node(cfg, link, sensors=SensorManager(cfg), relays=None, state=State(None))


def main():
    base = _env("MULTI_BASE", 1)
    count = _env("MULTI_COUNT", 50)
    interval = _env("MULTI_INTERVAL_MS", 10000)
    idle = _env("MULTI_IDLE_MS", 20)
    nodes = [make_node(base + k, interval, idle) for k in range(count)]
    print("multinode: started %d" % count)

    async def amain():
        for n in nodes:
            n.start()
            await asyncio.sleep_ms(20)      # do not hit the pairing window all in the same millisecond
        while True:
            await asyncio.sleep_ms(5000)
            paired = sum(1 for n in nodes if n.link.paired)
            tel = sum(n.counters["tel_tx"] for n in nodes)
            fail = sum(n.counters["tel_fail"] for n in nodes)
            print("multinode: paired %d/%d tel %d fail %d" % (paired, count, tel, fail))
            if os.getenv("MULTI_DEBUG"):
                c = nodes[0].link.counters
                print("multinode: node %d link %r" % (base, dict((k, v) for k, v in c.items() if v)))

    asyncio.run(amain())
