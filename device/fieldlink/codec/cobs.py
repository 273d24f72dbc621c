# Consistent Overhead Byte Stuffing (Cheshire & Baker), byte-compatible with the PyPI `cobs`
# library (cobs.cobs.encode / decode): the output never contains 0x00 and does NOT include the
# trailing 0x00 delimiter (the frame layer adds it).
#
#   encode(b"")                  == b"\x01"
#   encode(b"\x00")              == b"\x01\x01"
#   encode(b"\x11\x22\x00\x33")  == b"\x03\x11\x22\x02\x33"
#   encode(254 non-zero bytes)   == b"\xff" + data          (no extra trailing block)
#
# encode() output length is at most n + n // 254 + 1 for n input bytes (max_encoded_len()).
# decode() raises DecodeError for a 0x00 anywhere in the input or a block whose length code runs past
# the end of the input. The work is done per block / per zero-free run, not per byte.
from fieldlink.errors import DecodeError


def max_encoded_len(n):
    """Upper bound of len(encode(data)) for len(data) == n."""
    return n + n // 254 + 1


def _as_findable(data):
    # bytes and bytearray have .find(); memoryview (and other buffers) do not
    if isinstance(data, (bytes, bytearray)):
        return data
    if isinstance(data, str):
        raise TypeError("COBS needs a bytes-like object, not str")
    return bytes(data)


def encode_into(data, dst, o=0):
    """COBS-encode bytes/bytearray `data` into memoryview/bytearray `dst` at offset `o`.

    `dst` must have max_encoded_len(len(data)) bytes free from `o`. Returns the new offset.
    """
    src = memoryview(data)
    n = len(data)
    pos = 0
    while True:
        z = data.find(b"\x00", pos)
        end = n if z < 0 else z
        start = pos
        while end - pos >= 254:
            dst[o] = 0xFF
            dst[o + 1:o + 255] = src[pos:pos + 254]
            o += 255
            pos += 254
        k = end - pos
        if z >= 0 or k or end == start:
            # a block of k bytes followed by an (implied) zero; the implied zero of the final
            # block is dropped by the decoder. A last run that is an exact multiple of 254 needs
            # no extra block (same as the reference library).
            dst[o] = k + 1
            if k:
                dst[o + 1:o + 1 + k] = src[pos:end]
            o += k + 1
        if z < 0:
            return o
        pos = z + 1


def encode(data):
    """COBS-encode a bytes-like object; returns bytes without the 0x00 delimiter."""
    data = _as_findable(data)
    out = bytearray(max_encoded_len(len(data)))
    o = encode_into(data, memoryview(out), 0)
    return bytes(memoryview(out)[:o])


def decode_into(src, n, dst):
    """Decode the first n bytes of `src` (memoryview/bytes) into `dst` (memoryview, >= n bytes).

    The caller guarantees that src[:n] contains no 0x00 (FrameDecoder splits on 0x00); a zero where
    a length code is expected is still rejected. Returns the decoded length.
    """
    i = 0
    o = 0
    while i < n:
        code = src[i]
        if code == 0:
            raise DecodeError("COBS: zero byte in encoded data")
        j = i + code
        if j > n:
            raise DecodeError("COBS: truncated block (length code %d, %d bytes left)" % (code, n - i - 1))
        k = code - 1
        if k:
            dst[o:o + k] = src[i + 1:j]
            o += k
        i = j
        if code != 0xFF and i < n:
            dst[o] = 0
            o += 1
    return o


def decode(data):
    """COBS-decode a bytes-like object (without the 0x00 delimiter); returns bytes.

    Raises DecodeError on a 0x00 inside the data or a truncated block.
    """
    data = _as_findable(data)
    if data.find(b"\x00") >= 0:
        raise DecodeError("COBS: zero byte in encoded data")
    n = len(data)
    out = bytearray(n)
    o = decode_into(memoryview(data), n, memoryview(out))
    return bytes(memoryview(out)[:o])
