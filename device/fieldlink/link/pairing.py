# Pairing frames shared by the two link sides (gateway_link.GatewayLink, node_link.NodeLink):
# the LMK wrap, the PMK-tagged pairing body, the channel switch. docs/protocol.md "Pairing".
import hashlib

from fieldlink.codec import mpack
from fieldlink.link.core import Link
from fieldlink.link.frame import F_AUTH, build, check_tag

KEY_LEN = 16
NONCE_LEN = 8


def wrap_key(pmk, node_mac, nonce, key):
    """LMK XOR SHA256(pmk || node mac || nonce)[:16]; the same call unwraps."""
    ks = hashlib.sha256(bytes(pmk) + bytes(node_mac) + bytes(nonce)).digest()
    return bytes(key[i] ^ ks[i] for i in range(KEY_LEN))


def _setch(wlan, ch):
    if wlan is not None:
        wlan.config(channel=ch)


class PairingLink(Link):
    """Link core plus the pairing frame helpers both sides use (PMK tag check, body decode, send)."""

    def _pair_body(self, h, buf, n):
        """Verify the PMK tag (secured network) and decode a pairing frame body; None if invalid."""
        if self.pmk is not None:
            if not (h.flags & F_AUTH) or not check_tag(self.pmk, buf, n):
                self.count("bad_auth")
                return None
        try:
            obj = mpack.unpackb(memoryview(buf)[h.body:h.end])
        except ValueError:
            self.count("bad_msgpack")
            return None
        if not isinstance(obj, list) or len(obj) < 2 or obj[0] != self.net_id:
            self.count("wrong_net")
            return None
        return obj

    def _pair_send(self, dst, mtype, msgid, obj):
        f = build(mtype, 0, self.boot_id, 0, msgid, mpack.packb(obj), 0, 0, 0, self.pmk)
        return self._raw_send(dst, f)
