# ruff: noqa: I001, B007, UP031 - MicroPython example code, kept as the docs write it
# asyncio client for the echo server: asend() then arecv() the echo, 20 times.
import asyncio

import aioespnow
import network

network.WLAN(network.WLAN.IF_STA).active(True)
e = aioespnow.AIOESPNow()
e.active(True)
peer = b'\x02\x00\x00\x00\x00\x0b'
e.add_peer(peer)


async def client(e):
    ok = 0
    for i in range(20):
        msg = b'ping %d' % i
        if not await e.asend(peer, msg):
            print("Heartbeat: peer not responding:", peer)
            continue
        mac, echo = await e.arecv()
        if mac == peer and echo == msg:
            ok += 1
    print("echoes", ok)

asyncio.run(client(e))
