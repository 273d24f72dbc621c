# ruff: noqa: I001, B007, UP031 - MicroPython example code, kept as the docs write it
# Sender and receiver on different channels: no ack until the sender changes to the receiver's channel;
# then memory use over many sends (alloc-free irecv on the other side).
import gc

import espnow
import network

sta = network.WLAN(network.WLAN.IF_STA)
sta.active(True)
sta.config(channel=1)
e = espnow.ESPNow()
e.active(True)
peer = b'\x02\x00\x00\x00\x00\x0b'
e.add_peer(peer)
print("channel", sta.config("channel"), e.send(peer, b'hello?'))
sta.config(channel=6)
print("channel", sta.config("channel"), e.send(peer, b'hello!'))
for i in range(500):
    e.send(peer, b'bulk %d' % i, False)
e.send(peer, b'end')
gc.collect()
print("stats", e.stats()[0])
