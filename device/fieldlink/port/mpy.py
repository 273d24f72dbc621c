# fieldlink hardware port: MicroPython (machine, network, espnow, esp32, onewire). Same functions as
# port/cpy.py; pins are GPIO numbers.
NAME = "micropython"


def out_pin(pin, value):
    """An output created at `value` (no glitch): machine.Pin(pin, OUT, value=value)."""
    import machine
    return machine.Pin(pin, machine.Pin.OUT, value=value)


def i2c(bcfg):
    import machine
    return machine.I2C(bcfg["id"], scl=machine.Pin(bcfg["scl"]), sda=machine.Pin(bcfg["sda"]),
                       freq=bcfg.get("freq", 400000))


def adc(pin):
    import machine
    a = machine.ADC(machine.Pin(pin))
    try:
        a.atten(machine.ADC.ATTN_11DB)  # full range ~0.15..3.1 V on ESP32-S3/C6
    except (AttributeError, ValueError):
        pass
    return a


def uart(uart_id, cfg):
    import machine
    kw = {}
    for k in ("tx", "rx"):
        if k in cfg:
            kw[k] = cfg[k]
    return machine.UART(uart_id, baudrate=9600, bits=8, parity=None, stop=1, **kw)


def onewire(pin):
    import machine
    import onewire as ow
    return ow.OneWire(machine.Pin(pin))


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
        esp.config(rxbuf=int((cfg.get("options") or {}).get("rxbuf", 16 * 263)))
    except Exception:
        pass
    esp.active(True)
    return wlan, esp, bytes(wlan.config("mac"))


def _machine():
    try:
        import machine
        return machine
    except ImportError:
        return None


def wdt(ms):
    m = _machine()
    if m is None or not hasattr(m, "WDT"):
        return None
    return m.WDT(timeout=ms)


def rtc():
    """An object with memory([data]) that survives deep sleep (machine.RTC), or None."""
    m = _machine()
    if m is None:
        return None
    try:
        return m.RTC()
    except Exception:
        return None


def woke_from_deepsleep():
    m = _machine()
    try:
        return m is not None and m.reset_cause() == m.DEEPSLEEP_RESET
    except Exception:
        return False


def deepsleep_fn():
    m = _machine()
    return getattr(m, "deepsleep", None) if m is not None else None


def reset_fn():
    m = _machine()
    return getattr(m, "reset", None) if m is not None else None
