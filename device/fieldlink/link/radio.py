# Bring up the radio for the link and build the link options from the board config; used by both
# role starters (gateway/start.py, node/start.py).


def radio(cfg):
    """(wlan, esp, mac): Wi-Fi station interface up (not connected) and ESP-NOW active."""
    import espnow
    import network
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    try:
        wlan.disconnect()
    except Exception:
        pass
    esp = espnow.ESPNow()
    # receive buffer: 16 frames (263 bytes each in ESP-NOW's ring) instead of the default 2, so a window
    # of OTA chunks (docs/protocol.md "OTA chunk transfer") or a burst from several nodes is not dropped
    try:
        esp.config(rxbuf=int((cfg.get("options") or {}).get("rxbuf", RXBUF)))
    except Exception:
        pass
    esp.active(True)
    return wlan, esp, bytes(wlan.config("mac"))


RXBUF = 16 * 263


def ota_credit(esp):
    """OTA chunks a node can take at once without its ESP-NOW receive buffer dropping any (one frame
    of the buffer stays free for other traffic)."""
    try:
        n = esp.config("rxbuf") // 263 - 1
    except Exception:
        return 1
    return n if n > 1 else 1


def link_kw(cfg, wlan, store):
    opts = cfg.get("options") or {}
    kw = {"wlan": wlan, "store": store, "net_id": int(opts.get("net_id", 1))}
    pmk = opts.get("pmk")
    if isinstance(pmk, str) and len(pmk) == 32:
        import binascii
        kw["pmk"] = binascii.unhexlify(pmk)
    return kw
