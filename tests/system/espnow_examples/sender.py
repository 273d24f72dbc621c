# ruff: noqa: I001, B007, UP031 - MicroPython example code, kept as the docs write it
# MicroPython docs (library/espnow.rst, "Example"): the sender, peer = the receiver board's MAC
import network
import espnow

# A WLAN interface must be active to send()/recv()
sta = network.WLAN(network.WLAN.IF_STA)  # Or network.WLAN.IF_AP
sta.active(True)
sta.disconnect()      # For ESP8266

e = espnow.ESPNow()
e.active(True)
peer = b'\x02\x00\x00\x00\x00\x0b'   # MAC address of peer's wifi interface
e.add_peer(peer)      # Must add_peer() before send()

e.send(peer, "Starting...")
for i in range(100):
    e.send(peer, str(i)*20, True)
e.send(peer, b'end')
print("sent", e.stats())
