# OTA chunk transfer over the ESP-NOW link (docs/protocol.md "OTA chunk transfer"): the image is cut
# into fixed-size chunks sent in windows; the receiver answers a poll with a selective-ACK bitmap, so
# only chunks that were really lost are sent again (the link's fragmented-message path resends every
# fragment of a message). Flow control: at most min(window, receiver credit) chunks beyond the first
# missing one are in flight. Resume: the receiver's sink says from which chunk it continues (its last
# durably written block), after a node reboot or a link loss.
#
# Both ends are pure state machines with no radio, clock or file access of their own: the caller feeds
# decoded messages (lists, see the OP_* table) and a millisecond tick, and sends what they return.
# This module holds what both ends share (the messages, valid(), the blob format); each end is a module
# of its own so a board carries only its side: transfer_tx.Sender (gateway, fieldlink.ota.mailbox),
# transfer_rx.Receiver (node, fieldlink.ota.transfer_node).
import hashlib

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# messages (msgpack arrays carried as the body of an unsequenced T_OTA_CHUNK link frame)
OP_START = const(1)    # S->R [1, sid, cid, size, chunk, window, min_battery]
OP_DATA = const(2)     # S->R [2, sid, idx, pid, data]     pid != 0: answer with a SACK now
OP_POLL = const(3)     # S->R [3, sid, pid]
OP_SACK = const(4)     # R->S [4, sid, base, bits, credit, pid]
OP_FIN = const(5)      # R->S [5, sid, ok, info]
OP_REFUSE = const(6)   # R->S [6, sid, reason]
OP_ABORT = const(7)    # S->R [7, sid, reason]
ARITY = (0, 7, 5, 3, 6, 4, 3, 3)

MAX_WINDOW = const(32)    # the SACK bitmap is 32 bits
MAX_CHUNK = const(223)    # largest chunk that fits one authenticated ESP-NOW frame (250 - 27)


# What a node receives is one blob: MAGIC | len(manifest) (2 bytes, big endian) | manifest | signature
# (64 bytes) | payload, so it can verify the signed manifest before it accepts a single payload byte.
MAGIC = b"FLO1"
SIG_LEN = 64


def image_id(manifest):
    """The 32-bit content id of an update: the first 4 bytes of SHA-256 over the signed manifest."""
    d = hashlib.sha256(bytes(manifest)).digest()
    return (d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]


def valid(msg):
    """The op of a well-formed message (list, known op, right arity, int sid), else 0."""
    if not isinstance(msg, list) or not msg:
        return 0
    op = msg[0]
    if not isinstance(op, int) or op < 1 or op > 7 or len(msg) != ARITY[op]:
        return 0
    if not isinstance(msg[1], int):
        return 0
    if op == OP_DATA:
        if not isinstance(msg[2], int) or not isinstance(msg[3], int) or not isinstance(msg[4], (bytes, bytearray)):
            return 0
    elif op == OP_START or op == OP_SACK:
        for v in msg[2:]:
            if not isinstance(v, int) or v < 0:
                return 0
    elif op == OP_POLL:
        if not isinstance(msg[2], int):
            return 0
    return op
