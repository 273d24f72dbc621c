# ruff: noqa: I001, B007, UP031 - MicroPython example code, kept as the docs write it
# Listens on channel 6 with the alloc-free irecv(); reports the heap after 100 and after all messages.
import gc

import espnow
import network

sta = network.WLAN(network.WLAN.IF_STA)
sta.active(True)
sta.config(channel=6)
e = espnow.ESPNow()
e.active(True)
print("listening on", sta.config("channel"))
n = 0
mark = None
for mac, msg in e:  # iteration is irecv(): one reused buffer
    if mac is None:
        continue
    if msg == b'end':
        break
    n += 1
    if n == 100:
        gc.collect()
        mark = gc.mem_alloc()
gc.collect()
print("received", n, "heap growth", gc.mem_alloc() - mark)
