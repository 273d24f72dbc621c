# ruff: noqa: I001, B007, UP031 - MicroPython example code, kept as the docs write it
# ESP-NOW v2: one 1470-byte frame to a v2 board and to a v1 board.
import espnow
import network

sta = network.WLAN(network.WLAN.IF_STA)
sta.active(True)
e = espnow.ESPNow()
e.active(True)
print("MAX_DATA_LEN", espnow.MAX_DATA_LEN, e.config("rxbuf"))
for peer in (b'\x02\x00\x00\x00\x00\x0b', b'\x02\x00\x00\x00\x00\x0c'):
    e.add_peer(peer)
    print("sent", e.send(peer, bytes(range(256)) * 5 + bytes(190)))
try:
    e.send(b'\x02\x00\x00\x00\x00\x0b', bytes(1471))
except OSError as err:
    print("too long", err.args)
