# MicroPython entry for the pty system tests (no tests here; pytest imports it harmlessly):
#   micropython test_farm_entry.py --nodes N [--ring R] [--interval MS] [--hb S] [--tick MS]
# Runs the real Gateway and Uplink with the uplink on stdin/stdout (the pty master) and N real Nodes
# (SensorManager with synthetic sensors, Relays on fake pins) connected through the in-memory FakeAir of
# tests/device/test_node_support.py, all in one asyncio loop.
import sys


def _arg(name, default):
    argv = sys.argv
    for i in range(len(argv) - 1):
        if argv[i] == name:
            return int(argv[i + 1])
    return default


def main():
    import asyncio
    import json

    from fieldlink.gateway.role import Gateway
    from fieldlink.gateway.uplink import StdioTransport, Uplink
    from fieldlink.node.role import Node
    from fieldlink.node.sensors import SensorManager
    from fieldlink.relays import Relays
    from fieldlink.runtime.state import State
    from test_node_support import GW_CFG, NODE_CFG, FakeAir, FakeLink, PinBank

    n_nodes = _arg("--nodes", 5)
    ring = _arg("--ring", 256)
    air = FakeAir()
    gw_mac = b"\x02\xee\x00\x00\x00\x01"
    gwl = FakeLink(air, gw_mac, gateway=True)
    up = Uplink(StdioTransport(), boot=_arg("--boot", 1), capacity=ring, host_timeout_ms=1500)
    gcfg = json.loads(json.dumps(GW_CFG))
    gcfg["options"]["ring_buffer"] = ring
    gw = Gateway(gcfg, gwl, up, boot=_arg("--boot", 1))
    nodes = []
    for i in range(n_nodes):
        cfg = json.loads(json.dumps(NODE_CFG))
        cfg["name"] = "n" + str(i)
        cfg["sensors"] = [{"name": "syn", "driver": "synthetic", "interval_ms": _arg("--interval", 500),
                           "seed": i + 1}]
        cfg["options"] = {"heartbeat_s": _arg("--hb", 2), "telemetry_batch": 2, "batch_ms": 1000,
                          "tick_ms": _arg("--tick", 100)}
        mac = bytes([2, 0, 0, 0, i >> 8, i & 0xFF])
        link = FakeLink(air, mac)
        node = Node(cfg, link, sensors=SensorManager(cfg), relays=Relays(cfg, pin_factory=PinBank()),
                    state=State(None))
        nodes.append(node)

    async def amain():
        gw.start()
        for n in nodes:
            n.start()
        while True:
            await asyncio.sleep(1)

    asyncio.run(amain())


if __name__ == "__main__":
    main()
