# ESP-NOW link frame header codec (docs/protocol.md, "ESP-NOW link frame").
#
#   off  size  field
#   0    1     version (VERSION = 1); any other value is rejected before anything else is read
#   1    1     type (T_* below)
#   2    1     flags (F_* below); reserved bits must be 0
#   3    1     boot id of the sender (low 8 bits of its persisted boot counter); in an ACK: the boot id
#              of the acknowledged message, echoed
#   4    2     sequence, big endian: per sender, per destination, one per logical message
#              (the same for every retry and every fragment of that message)
#   6    2     message id, big endian: ACK -> sequence of the acknowledged message; otherwise an
#              application id chosen by the upper layer (e.g. command correlation id), 0 if unused
#   8    4     [F_CTR]  replay counter, big endian (commands): strictly increasing per peer, persisted
#   .    2     [F_FRAG] fragment index, fragment count (1..MAX_FRAGS)
#   .    n     body: msgpack (or one slice of the msgpack body when fragmented)
#   end  8     [F_AUTH] truncated HMAC-SHA256(link key, every byte before the tag)
import hashlib

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from fieldlink.runtime.clock import ticks_add, ticks_diff, ticks_ms  # noqa: F401 (re-exported)

VERSION = const(1)
MAX_FRAME = const(250)   # ESP-NOW payload limit
HDR = const(8)           # fixed header size
CTR_LEN = const(4)
FRAG_LEN = const(2)
TAG_LEN = const(8)
MAX_FRAGS = const(32)

# message types
T_TELEMETRY = const(0x01)
T_EVENT = const(0x02)
T_COMMAND = const(0x03)
T_ACK = const(0x04)
T_BEACON = const(0x05)
T_JOIN_REQ = const(0x06)
T_JOIN_ACCEPT = const(0x07)
T_JOIN_REFUSED = const(0x08)
T_TIME_SYNC = const(0x09)
T_HEARTBEAT = const(0x0A)
T_OTA_CHUNK = const(0x0B)   # reserved for OTA over ESP-NOW
T_RAW = const(0x0F)         # raw / other application payload
TYPE_NAMES = {
    0x01: "telemetry", 0x02: "event", 0x03: "command", 0x04: "ack", 0x05: "beacon", 0x06: "join_req",
    0x07: "join_accept", 0x08: "join_refused", 0x09: "time_sync", 0x0A: "heartbeat", 0x0B: "ota_chunk",
    0x0F: "raw",
}

# flags
F_ACK_REQ = const(0x01)   # receiver must answer with T_ACK
F_FRAG = const(0x02)      # fragment index/count present
F_CTR = const(0x04)       # 4-byte replay counter present
F_AUTH = const(0x08)      # 8-byte HMAC tag at the end of the frame
F_RESERVED = const(0xF0)  # must be 0; a frame with any of these bits set is rejected

# ACK status (first element of the ACK body [status, result])
ST_OK = const(0)          # applied; result is the handler's return value
ST_DUP = const(1)         # already applied earlier (result repeated if still cached, else None)
ST_REPLAY = const(2)      # refused: replay counter not greater than the last one seen
ST_ERROR = const(3)       # handler raised; result is the error text
ST_UNHANDLED = const(4)   # no handler for this message type
ST_DENIED = const(5)      # sender not paired / not allowed
# local LinkError.status, never on the wire: not sent, too many messages to this peer in flight
ST_BUSY = const(0x80)

# parse errors (return values of parse(); 0 means ok) -> counter names
E_SHORT = const(1)
E_VERSION = const(2)
E_TYPE = const(3)
E_FLAGS = const(4)
E_FRAG = const(5)
ERR_NAMES = ("ok", "short", "bad_version", "unknown_type", "bad_flags", "bad_fragment")


def overhead(flags):
    """Header + trailer bytes a frame with these flags carries."""
    n = HDR
    if flags & F_CTR:
        n += CTR_LEN
    if flags & F_FRAG:
        n += FRAG_LEN
    if flags & F_AUTH:
        n += TAG_LEN
    return n


def write_header(buf, mtype, flags, boot, seq, msgid, ctr=0, fidx=0, fcnt=0):
    """Write the header into buf (a bytearray) at offset 0; return the body offset."""
    buf[0] = VERSION
    buf[1] = mtype
    buf[2] = flags
    buf[3] = boot & 0xFF
    buf[4] = (seq >> 8) & 0xFF
    buf[5] = seq & 0xFF
    buf[6] = (msgid >> 8) & 0xFF
    buf[7] = msgid & 0xFF
    o = HDR
    if flags & F_CTR:
        buf[o] = (ctr >> 24) & 0xFF
        buf[o + 1] = (ctr >> 16) & 0xFF
        buf[o + 2] = (ctr >> 8) & 0xFF
        buf[o + 3] = ctr & 0xFF
        o += CTR_LEN
    if flags & F_FRAG:
        buf[o] = fidx
        buf[o + 1] = fcnt
        o += FRAG_LEN
    return o


def build(mtype, flags, boot, seq, msgid, body, ctr=0, fidx=0, fcnt=0, key=None):
    """Return one complete frame (bytes). body: already-encoded msgpack bytes (or a fragment of it).

    With key set, F_AUTH is added and the HMAC tag appended. Raises ValueError if > MAX_FRAME."""
    if key is not None:
        flags |= F_AUTH
    n = overhead(flags) + len(body)
    if n > MAX_FRAME:
        raise ValueError("frame too long: %d > %d" % (n, MAX_FRAME))
    buf = bytearray(n)
    o = write_header(buf, mtype, flags, boot, seq, msgid, ctr, fidx, fcnt)
    buf[o:o + len(body)] = body
    if key is not None:
        end = n - TAG_LEN
        buf[end:] = tag(key, memoryview(buf)[:end])
    return bytes(buf)


class Header:
    """Parsed header, reused between frames (no allocation per frame)."""

    def __init__(self):
        self.mtype = 0
        self.flags = 0
        self.boot = 0
        self.seq = 0
        self.msgid = 0
        self.ctr = 0
        self.fidx = 0
        self.fcnt = 1
        self.body = 0      # body start offset
        self.end = 0       # body end offset (tag excluded)


def parse(buf, n, h):
    """Parse frame buf[:n] into Header h. Return 0 or an E_* error code. Never raises."""
    if n < 1:
        return E_SHORT
    if buf[0] != VERSION:
        return E_VERSION
    if n < HDR:
        return E_SHORT
    t = buf[1]
    if t not in TYPE_NAMES:
        return E_TYPE
    f = buf[2]
    if f & F_RESERVED:
        return E_FLAGS
    h.mtype = t
    h.flags = f
    h.boot = buf[3]
    h.seq = (buf[4] << 8) | buf[5]
    h.msgid = (buf[6] << 8) | buf[7]
    o = HDR
    end = n
    if f & F_AUTH:
        end -= TAG_LEN
    if f & F_CTR:
        if o + CTR_LEN > end:
            return E_SHORT
        h.ctr = (buf[o] << 24) | (buf[o + 1] << 16) | (buf[o + 2] << 8) | buf[o + 3]
        o += CTR_LEN
    else:
        h.ctr = 0
    if f & F_FRAG:
        if o + FRAG_LEN > end:
            return E_SHORT
        h.fidx = buf[o]
        h.fcnt = buf[o + 1]
        o += FRAG_LEN
        if h.fcnt < 1 or h.fcnt > MAX_FRAGS or h.fidx >= h.fcnt:
            return E_FRAG
    else:
        h.fidx = 0
        h.fcnt = 1
    if o > end:
        return E_SHORT
    h.body = o
    h.end = end
    return 0


def _hmac(key, msg):
    blk = 64
    if len(key) > blk:
        key = hashlib.sha256(key).digest()
    k = bytearray(blk)
    k[:len(key)] = key
    ipad = bytearray(blk)
    opad = bytearray(blk)
    for i in range(blk):
        ipad[i] = k[i] ^ 0x36
        opad[i] = k[i] ^ 0x5C
    h = hashlib.sha256(ipad)
    h.update(msg)
    o = hashlib.sha256(opad)
    o.update(h.digest())
    return o.digest()


def hmac_sha256(key, msg):
    """HMAC-SHA256 (RFC 2104) built on hashlib: MicroPython has no hmac module."""
    return _hmac(bytes(key), bytes(msg))


def tag(key, msg):
    """The 8-byte frame authentication tag."""
    return _hmac(bytes(key), bytes(msg))[:TAG_LEN]


def check_tag(key, buf, n):
    """True if the last TAG_LEN bytes of buf[:n] are the tag of the bytes before them."""
    if n < HDR + TAG_LEN:
        return False
    t = tag(key, memoryview(buf)[:n - TAG_LEN])
    d = 0
    for i in range(TAG_LEN):
        d |= t[i] ^ buf[n - TAG_LEN + i]
    return d == 0
