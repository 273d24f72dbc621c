# Serial frame (gateway <-> host), see docs/protocol.md "Serial frame":
#
#     frame = COBS(payload || CRC16_BE(payload)) || 0x00
#
# CRC16 is CRC-16/CCITT-FALSE (fieldlink.codec.crc) over the payload only, appended big-endian. The 0x00
# delimiter is the only frame boundary; the COBS body never contains 0x00.
import struct

from fieldlink.codec import cobs
from fieldlink.codec.crc import crc16
from fieldlink.errors import DecodeError

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

MAX_FRAME = const(1024)  # default max payload bytes accepted by FrameDecoder
CRC_LEN = const(2)


def max_body_len(max_payload):
    """Largest COBS body (without the 0x00) a payload of max_payload bytes can produce."""
    return cobs.max_encoded_len(max_payload + CRC_LEN)


def encode_frame(payload):
    """Frame a payload: COBS(payload || CRC16 big-endian) followed by the 0x00 delimiter."""
    if isinstance(payload, str):
        raise TypeError("frame payload must be bytes-like, not str")
    data = bytearray(payload)
    data += struct.pack(">H", crc16(data))
    n = len(data)
    out = bytearray(cobs.max_encoded_len(n) + 1)
    mv = memoryview(out)
    o = cobs.encode_into(data, mv, 0)
    out[o] = 0
    return bytes(mv[:o + 1])


def _check(dec, m):
    # dec: decoded body (payload || crc) of m bytes. Returns payload length or raises DecodeError.
    if m < CRC_LEN:
        raise DecodeError("frame: too short (%d bytes after COBS, need >= 2)" % m)
    plen = m - CRC_LEN
    if crc16(dec[:plen]) != (dec[plen] << 8) | dec[plen + 1]:
        raise DecodeError("frame: CRC mismatch")
    return plen


def decode_frame(body):
    """Decode one frame body (without the trailing 0x00) to its payload bytes.

    Raises DecodeError for bad COBS (including a 0x00 inside), a frame shorter than the CRC, or a CRC
    mismatch.
    """
    dec = cobs.decode(body)
    plen = _check(memoryview(dec), len(dec))
    return dec[:plen]


class FrameDecoder:
    """Streaming decoder: feed() any chunks of the serial byte stream, get complete payloads back.

    - A frame ends at each 0x00; empty frames (consecutive 0x00) are ignored silently.
    - A body that fails COBS or is shorter than the CRC counts in framing_errors; a CRC mismatch in
      crc_errors. Either way the decoder resynchronises at the next 0x00.
    - A frame whose payload would exceed max_frame bytes counts in oversize and is discarded up to
      the next 0x00 without growing any buffer: both buffers are preallocated once
      (max_body_len(max_frame) bytes each).
    - feed() never raises for any input bytes.
    """

    def __init__(self, max_frame=MAX_FRAME):
        if not isinstance(max_frame, int) or max_frame < 1:
            raise ValueError("max_frame must be a positive int")
        self.max_frame = max_frame
        self._cap = max_body_len(max_frame)
        self._buf = bytearray(self._cap)
        self._bmv = memoryview(self._buf)
        self._dec = bytearray(self._cap)
        self._dmv = memoryview(self._dec)
        self._fill = 0
        self._skip = False
        self.frames = 0
        self.crc_errors = 0
        self.framing_errors = 0
        self.oversize = 0
        self.bytes_in = 0

    def buffered(self):
        """Bytes of the current, incomplete frame held in the buffer (always <= capacity())."""
        return self._fill

    def capacity(self):
        return self._cap

    def reset(self):
        """Drop any partial frame (counters are kept)."""
        self._fill = 0
        self._skip = False

    def stats(self):
        return {
            "frames": self.frames,
            "crc_errors": self.crc_errors,
            "framing_errors": self.framing_errors,
            "oversize": self.oversize,
            "bytes_in": self.bytes_in,
        }

    def feed(self, data):
        """Consume a chunk of bytes; return the list of payloads (bytes) completed by it."""
        if not isinstance(data, (bytes, bytearray)):
            data = bytes(data)
        n = len(data)
        self.bytes_in += n
        out = []
        src = memoryview(data)
        pos = 0
        while pos < n:
            z = data.find(b"\x00", pos)
            end = n if z < 0 else z
            k = end - pos
            if k and not self._skip:
                f = self._fill
                if f + k > self._cap:
                    self._skip = True
                    self._fill = 0
                    self.oversize += 1
                else:
                    self._bmv[f:f + k] = src[pos:end]
                    self._fill = f + k
            if z < 0:
                break
            pos = z + 1
            if self._skip:
                self._skip = False
            elif self._fill:
                p = self._finish()
                if p is not None:
                    out.append(p)
        return out

    def _finish(self):
        m = self._fill
        self._fill = 0
        try:
            m = cobs.decode_into(self._bmv, m, self._dmv)
        except DecodeError:
            self.framing_errors += 1
            return None
        if m < CRC_LEN:
            self.framing_errors += 1
            return None
        try:
            plen = _check(self._dmv, m)
        except DecodeError:
            self.crc_errors += 1
            return None
        if plen > self.max_frame:
            self.oversize += 1
            return None
        self.frames += 1
        return bytes(self._dmv[:plen])
