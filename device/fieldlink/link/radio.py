# Bring up the radio for the link and build the link options from the board config; used by both
# role starters (gateway/start.py, node/start.py).


def radio(cfg):
    """(wlan, esp, mac): Wi-Fi station interface up (not connected) and ESP-NOW active, from the hardware
    port (MicroPython network/espnow, or CircuitPython wifi/espnow behind the same methods)."""
    from fieldlink.port.active import port
    return port().radio(cfg)


RXBUF = 16 * 263   # ESP-NOW receive buffer: 16 frames of 263 bytes (fieldlink.ota.transfer_node.ota_credit)


def link_kw(cfg, wlan, store):
    opts = cfg.get("options") or {}
    kw = {"wlan": wlan, "store": store, "net_id": int(opts.get("net_id", 1))}
    pmk = opts.get("pmk")
    if isinstance(pmk, str) and len(pmk) == 32:
        import binascii
        kw["pmk"] = binascii.unhexlify(pmk)
    return kw
