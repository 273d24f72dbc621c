# Virtual-board `network` module: WLAN(STA_IF/AP_IF) enough for ESP-NOW (MAC, channel, active).
# There are no access points in the sim: connect() never succeeds (status stays STAT_CONNECTING, then
# STAT_NO_AP_FOUND); scan() returns []. The channel set here is the channel ESP-NOW uses.
import simboard

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_BEACON_TIMEOUT = 200
STAT_ASSOC_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204
AUTH_OPEN = 0
AUTH_WEP = 1
AUTH_WPA_PSK = 2
AUTH_WPA2_PSK = 3
AUTH_WPA_WPA2_PSK = 4
MODE_11B = 1
MODE_11G = 2
MODE_11N = 4
MODE_LR = 8
PM_NONE = 0
PM_PERFORMANCE = 1
PM_POWERSAVE = 2

_hostname = ["fieldlink"]
_country = ["01"]


def hostname(name=None):
    if name is None:
        return _hostname[0]
    if not isinstance(name, str) or not 0 < len(name) <= 32:
        raise ValueError("hostname must be 1..32 characters")
    _hostname[0] = name
    return None


def country(code=None):
    if code is None:
        return _country[0]
    _country[0] = str(code)
    return None


def _state(b, idx):
    st = b.wlan[idx]
    if st is None:
        mac = bytes(b.mac)
        if idx == AP_IF:  # the ESP32 AP MAC is the base MAC + 1
            mac = mac[:5] + bytes([(mac[5] + 1) & 0xFF])
        st = b.wlan[idx] = {"active": False, "mac": mac, "ssid": "ESP_%02X%02X%02X" % tuple(mac[3:6]) if idx
                            else "", "status": STAT_IDLE, "txpower": 20, "pm": PM_PERFORMANCE, "key": "",
                            "hidden": False, "security": AUTH_OPEN, "reconnects": -1,
                            "protocol": _protocol_default(b)}
    return st


# wifi_protocol bitmap (esp_wifi_types.h); PROTOCOL_DEFAULT is 11b|g|n, plus 11ax on chips with
# Wi-Fi 6 (the C6), as network_wlan.c defines it
PROTOCOL_11B = 1
PROTOCOL_11G = 2
PROTOCOL_11N = 4
PROTOCOL_LR = 8
PROTOCOL_11AX = 0x10


def _protocol_default(b):
    return 0x17 if b.chip == "esp32c6" else 7


class WLAN:
    IF_STA = STA_IF
    IF_AP = AP_IF
    PROTOCOL_DEFAULT = 7  # an ESP32-S3's; a C6 board's WLAN objects carry 0x17 (see __init__)
    PROTOCOL_LR = PROTOCOL_LR
    SEC_WEP = AUTH_WEP
    SEC_WPA = AUTH_WPA_PSK
    SEC_WPA2 = AUTH_WPA2_PSK
    SEC_WPA_WPA2 = AUTH_WPA_WPA2_PSK
    PM_NONE = PM_NONE
    PM_PERFORMANCE = PM_PERFORMANCE
    PM_POWERSAVE = PM_POWERSAVE
    SEC_OPEN = AUTH_OPEN

    def __init__(self, interface_id=STA_IF):
        if interface_id not in (STA_IF, AP_IF):
            raise ValueError("invalid WLAN interface identifier")
        self._if = interface_id
        self._b = simboard.board()
        self.PROTOCOL_DEFAULT = _protocol_default(self._b)
        _state(self._b, interface_id)

    def _st(self):
        return _state(self._b, self._if)

    def active(self, is_active=None):
        st = self._st()
        if is_active is None:
            return st["active"]
        st["active"] = bool(is_active)
        core = self._b.espnow
        if core is not None:
            core.wlan_changed()
        return None

    def connect(self, ssid=None, key=None, *, bssid=None):
        st = self._st()
        if self._if != STA_IF:
            raise OSError("AP interface cannot connect")
        if not st["active"]:
            raise OSError("Wifi Internal Error")
        st["status"] = STAT_NO_AP_FOUND

    def disconnect(self):
        self._st()["status"] = STAT_IDLE

    def isconnected(self):
        return False

    def status(self, param=None):
        st = self._st()
        if param is None:
            return st["status"]
        if param == "rssi":
            raise OSError("STA is not connected")
        if param == "stations":
            return []
        raise ValueError("unknown status param")

    def scan(self):
        if not self._st()["active"]:
            raise OSError("Wifi Not Started")
        return []

    def ifconfig(self, cfg=None):
        if cfg is None:
            return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0") if self._if == STA_IF else \
                ("192.168.4.1", "255.255.255.0", "192.168.4.1", "0.0.0.0")
        return None

    def ipconfig(self, *args, **kw):
        if args:
            if args[0] == "addr4":
                return self.ifconfig()[:2]
            return None
        return None

    def config(self, *args, **kwargs):
        st = self._st()
        b = self._b
        if args and kwargs:
            raise TypeError("either query or set parameters, not both")
        if args:
            if len(args) != 1:
                raise TypeError("can query only one param")
            p = args[0]
            if p == "mac":
                return bytes(st["mac"])
            if p in ("channel",):
                return b.channel
            if p in ("ssid", "essid"):
                return st["ssid"]
            if p in ("txpower", "pm", "key", "hidden", "security", "reconnects", "protocol"):
                return st[p]
            if p == "hostname" or p == "dhcp_hostname":
                return _hostname[0]
            raise ValueError("unknown config param")
        for k, v in kwargs.items():
            if k == "mac":
                v = bytes(v)
                if len(v) != 6:
                    raise ValueError("invalid buffer length")
                st["mac"] = v
                if self._if == STA_IF:
                    b.mac = v
                if b.espnow is not None:
                    b.espnow.wlan_changed()
            elif k == "channel":
                if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 14:
                    raise ValueError("channel must be 1..14")
                b.channel = v
                if b.espnow is not None:
                    b.espnow.wlan_changed()
            elif k in ("ssid", "essid"):
                st["ssid"] = str(v)
            elif k == "protocol":
                # esp_wifi_set_protocol(): a bitmap of PROTOCOL_11B/G/N/LR (and 11AX on the C6)
                allowed = 0x1F if b.chip == "esp32c6" else 0x0F
                if isinstance(v, bool) or not isinstance(v, int) or not v or v & ~allowed:
                    raise RuntimeError("Wifi Unknown Error 0x0102")  # esp_exceptions(): ESP_ERR_INVALID_ARG
                st[k] = v
            elif k in ("txpower", "pm", "key", "hidden", "security", "reconnects"):
                st[k] = v
            elif k in ("hostname", "dhcp_hostname"):
                hostname(v)
            elif k in ("max_clients", "password"):
                st[k] = v
            else:
                raise ValueError("unknown config param")
        return None
