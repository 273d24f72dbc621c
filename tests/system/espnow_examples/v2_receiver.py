# ruff: noqa: I001, B007, UP031 - MicroPython example code, kept as the docs write it
import espnow
import network

sta = network.WLAN(network.WLAN.IF_STA)
sta.active(True)
e = espnow.ESPNow()
e.active(True)
print("MAX_DATA_LEN", espnow.MAX_DATA_LEN, e.config("rxbuf"))
host, msg = e.recv(60000)
print("got", len(msg), msg == (bytes(range(256)) * 5 + bytes(190))[:len(msg)])
