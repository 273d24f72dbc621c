# ruff: noqa: I001, B007, UP031 - MicroPython example code, kept as the docs write it
# Sends 3 messages each time the irq receiver says it is ready for the next phase.
import espnow
import network

sta = network.WLAN(network.WLAN.IF_STA)
sta.active(True)
e = espnow.ESPNow()
e.active(True)
peer = b'\x02\x00\x00\x00\x00\x0b'
e.add_peer(peer)
n = 0
print("waiting")
for phase in range(3):
    mac, msg = e.recv(30000)
    print("peer says", msg)
    for _ in range(3):
        print("send", n, e.send(peer, b"msg %d" % n))
        n += 1
print("done")
