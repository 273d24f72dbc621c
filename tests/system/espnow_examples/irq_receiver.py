# ruff: noqa: I001, B007, UP031 - MicroPython example code, kept as the docs write it
# The docs' irq() callback (library/espnow.rst, "Callback Methods"), received while the program busy-waits
# on ticks_ms, sleeps with time.sleep_ms and awaits asyncio sleeps: 3 messages in each phase.
import asyncio
import time

import espnow
import network

sta = network.WLAN(network.WLAN.IF_STA)
sta.active(True)
e = espnow.ESPNow()
e.active(True)
sender = b'\x02\x00\x00\x00\x00\x0a'
e.add_peer(sender)
got = []


def recv_cb(e):
    while True:  # Read out all messages waiting in the buffer
        mac, msg = e.irecv(0)  # Don't wait if no messages left
        if mac is None:
            return
        got.append(bytes(msg))
        print(mac, msg)


e.irq(recv_cb)
e.send(sender, b'ready')
t0 = time.ticks_ms()
while len(got) < 3 and time.ticks_diff(time.ticks_ms(), t0) < 30000:
    pass
print("busy loop:", len(got))
e.send(sender, b'next')
while len(got) < 6 and time.ticks_diff(time.ticks_ms(), t0) < 60000:
    time.sleep_ms(50)
print("sleep_ms:", len(got))
e.send(sender, b'next')


async def wait():
    while len(got) < 9 and time.ticks_diff(time.ticks_ms(), t0) < 90000:
        await asyncio.sleep_ms(50)

asyncio.run(wait())
print("asyncio:", len(got))
print("stats", e.stats())
