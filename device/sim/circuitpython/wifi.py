# CircuitPython `wifi` for the virtual board: wifi.radio (MAC addresses, enabled, station/AP start and
# stop, tx_power, hostname) enough for ESP-NOW. There are no access points in the sim: connect() raises
# ConnectionError("No network with that ssid") and scans find nothing. The radio has one channel, the
# board's (simboard board.channel), which ESP-NOW uses: start_ap(channel=N) moves it to N and it stays
# there after stop_ap(), the usual way to pick the ESP-NOW channel on CircuitPython; so does
# wifi.Monitor(channel=N).
import simboard

try:
    ConnectionError
except NameError:  # a CircuitPython built-in (an OSError) the MicroPython unix port lacks
    import builtins

    class ConnectionError(OSError):
        pass

    builtins.ConnectionError = ConnectionError


class AuthMode:
    OPEN = "OPEN"
    WEP = "WEP"
    WPA = "WPA"
    WPA2 = "WPA2"
    WPA3 = "WPA3"
    PSK = "PSK"
    ENTERPRISE = "ENTERPRISE"


class PowerManagement:
    def __repr__(self):
        return "wifi.PowerManagement." + getattr(self, "_name", "?")


for _n in ("MIN", "MAX", "NONE", "UNKNOWN"):
    _v = PowerManagement()
    _v._name = _n
    setattr(PowerManagement, _n, _v)


def _state():
    b = simboard.board()
    st = getattr(b, "cpy_wifi", None)
    if st is None:
        # CircuitPython starts the station at boot (radio enabled, not connected)
        st = b.cpy_wifi = {"enabled": True, "station": True, "ap": False, "hostname": "espressif",
                           "tx_power": 20.0, "pm": PowerManagement.MIN, "mac_ap": None}
    return b, st


def _notify(b):
    core = getattr(b, "cpy_espnow", None)
    if core is not None:
        core.radio_changed()


class Radio:
    @property
    def enabled(self):
        return _state()[1]["enabled"]

    @enabled.setter
    def enabled(self, on):
        b, st = _state()
        st["enabled"] = bool(on)
        if not on:
            st["ap"] = False
        _notify(b)

    @property
    def hostname(self):
        return _state()[1]["hostname"]

    @hostname.setter
    def hostname(self, name):
        name = name.decode() if isinstance(name, (bytes, bytearray)) else str(name)
        if not 1 <= len(name) <= 253:
            raise ValueError("Hostname must be between 1 and 253 characters")
        _state()[1]["hostname"] = name

    @property
    def mac_address(self):
        return bytes(simboard.board().mac)

    @mac_address.setter
    def mac_address(self, mac):
        b, st = _state()
        mac = bytes(mac)
        if len(mac) != 6:
            raise ValueError("Invalid MAC address")
        if mac[0] & 1:
            raise ValueError("Invalid multicast MAC address")
        b.mac = mac
        _notify(b)

    @property
    def mac_address_ap(self):
        b, st = _state()
        if st["mac_ap"] is not None:
            return st["mac_ap"]
        m = bytes(b.mac)
        return m[:5] + bytes([(m[5] + 1) & 0xFF])

    @mac_address_ap.setter
    def mac_address_ap(self, mac):
        mac = bytes(mac)
        if len(mac) != 6:
            raise ValueError("Invalid MAC address")
        _state()[1]["mac_ap"] = mac

    @property
    def tx_power(self):
        return _state()[1]["tx_power"]

    @tx_power.setter
    def tx_power(self, dbm):
        _state()[1]["tx_power"] = float(dbm)

    @property
    def power_management(self):
        return _state()[1]["pm"]

    @power_management.setter
    def power_management(self, pm):
        _state()[1]["pm"] = pm

    def start_station(self):
        b, st = _state()
        st["station"] = True
        _notify(b)

    def stop_station(self):
        b, st = _state()
        st["station"] = False
        _notify(b)

    def start_ap(self, ssid, password=b"", *, channel=1, authmode=(), max_connections=4):
        b, st = _state()
        if not st["enabled"]:
            raise RuntimeError("Wifi is not enabled")
        if not isinstance(channel, int) or not 1 <= channel <= 13:
            raise ValueError("channel must be 1-13")
        if password and len(password) < 8:
            raise ValueError("WiFi password must be between 8 and 63 characters")
        st["ap"] = True
        b.channel = channel
        _notify(b)

    def stop_ap(self):
        b, st = _state()
        if not st["ap"]:
            raise RuntimeError("AP not started")  # what the Espressif port raises
        st["ap"] = False
        _notify(b)

    @property
    def ap_active(self):
        return _state()[1]["ap"]

    def connect(self, ssid, password=b"", *, channel=0, bssid=None, timeout=None):
        b, st = _state()
        if not st["enabled"]:
            raise RuntimeError("Wifi is not enabled")
        raise ConnectionError("No network with that ssid")

    @property
    def connected(self):
        return False

    @property
    def ipv4_address(self):
        return None

    @property
    def ap_info(self):
        return None

    def start_scanning_networks(self, *, start_channel=1, stop_channel=165):
        return iter(())

    def stop_scanning_networks(self):
        pass

    @property
    def channel(self):  # not in CircuitPython's API: the sim's view
        return simboard.board().channel


radio = Radio()


class Monitor:
    """wifi.Monitor(channel, queue): here only its effect on the radio channel is modelled."""

    def __init__(self, channel=1, queue=128):
        if not isinstance(channel, int) or not 1 <= channel <= 13:
            raise ValueError("channel must be 1-13")
        b = simboard.board()
        b.channel = channel
        _notify(b)
        self._channel = channel
        self.queue = queue

    @property
    def channel(self):
        return self._channel

    @channel.setter
    def channel(self, ch):
        Monitor.__init__(self, ch, self.queue)

    def deinit(self):
        pass

    def lost(self):
        return 0

    def queued(self):
        return 0

    def packet(self):
        return {}
