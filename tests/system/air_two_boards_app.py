# ruff: noqa: UP031 - MicroPython code: %-formatting on purpose
# Entry module for tests/system/test_air_two_boards.py, run on virtual boards (vboard --entry).
# Behaviour comes from environment variables: APP_ROLE (sender|receiver|sleeper|watchdog), APP_PEER
# (hex MAC), APP_CHANNEL, APP_COUNT.
import os
import time

import machine


def _radio():
    import espnow
    import network
    w = network.WLAN(network.STA_IF)
    w.active(True)
    w.config(channel=int(os.getenv("APP_CHANNEL") or "1"))
    e = espnow.ESPNow()
    e.active(True)
    peer = os.getenv("APP_PEER")
    if peer:
        e.add_peer(bytes.fromhex(peer))
    return e, (bytes.fromhex(peer) if peer else None)


def sender():
    e, peer = _radio()
    print("ready")
    n = int(os.getenv("APP_COUNT") or "20")
    for i in range(n):
        ok = e.send(peer, "msg-%d" % i)
        print("sent %d %d" % (i, 1 if ok else 0))
    print("done %s" % (e.stats(),))


def receiver():
    e, _ = _radio()
    print("ready")
    while True:
        mac, msg = e.recv(1000)
        if mac is not None:
            rssi = e.peers_table[mac][0]
            print("recv %s %s %d" % (mac.hex(), msg.decode(), rssi))


def sleeper():
    rtc = machine.RTC()
    mem = rtc.memory()
    n = mem[0] if mem else 0
    print("boot %d cause %d" % (n, machine.reset_cause()))
    if n < 2:
        rtc.memory(bytes([n + 1]))
        machine.deepsleep(300)
    print("awake for good")


def watchdog():
    cause = machine.reset_cause()
    print("cause %d" % cause)
    if cause == machine.WDT_RESET:
        print("recovered from watchdog")
        return
    machine.WDT(timeout=200)
    while True:
        time.sleep_ms(50)


def main():
    role = os.getenv("APP_ROLE")
    {"sender": sender, "receiver": receiver, "sleeper": sleeper, "watchdog": watchdog}[role]()
