# Serial frames on the native C core when fieldlink.runtime.native chose it, else fieldlink.codec.
# serialframe: encode_frame() and FrameDecoder with the same results, counters and stats() (tests/native/).
from fieldlink.codec import serialframe as _pyframe
from fieldlink.runtime import native

if native.module() is None:
    encode_frame = _pyframe.encode_frame
else:
    # the C function itself, chosen once at import (as the uplink imports it): no Python frame per call.
    # Same results and errors (TypeError for str); the frame is a new bytes object.
    encode_frame = native.module().frame_encode


class NativeFrameDecoder:
    """fieldlink.codec.serialframe.FrameDecoder on the C scanner: same feed(), counters and stats()."""

    def __init__(self, max_frame=_pyframe.MAX_FRAME):
        if not isinstance(max_frame, int) or max_frame < 1:
            raise ValueError("max_frame must be a positive int")
        N = native.module()
        self._n = N
        self.max_frame = max_frame
        self._mem = bytearray(N.scan_size(max_frame))
        self._feed = N.scan_feed_list
        N.scan_init(self._mem, max_frame)

    def feed(self, data):
        return self._feed(self._mem, data)  # the whole chunk in one call, a new list of bytes

    def buffered(self):
        return self._n.scan_get(self._mem, 2)

    def capacity(self):
        return self._n.scan_get(self._mem, 1)

    def reset(self):
        self._n.scan_reset(self._mem)

    @property
    def frames(self):
        return self._n.scan_get(self._mem, 4)

    @property
    def crc_errors(self):
        return self._n.scan_get(self._mem, 5)

    @property
    def framing_errors(self):
        return self._n.scan_get(self._mem, 6)

    @property
    def oversize(self):
        return self._n.scan_get(self._mem, 7)

    @property
    def bytes_in(self):
        return self._n.scan_get(self._mem, 8)

    def stats(self):
        return {"frames": self.frames, "crc_errors": self.crc_errors, "framing_errors": self.framing_errors,
                "oversize": self.oversize, "bytes_in": self.bytes_in}


def FrameDecoder(max_frame=_pyframe.MAX_FRAME):
    if native.module() is None:
        return _pyframe.FrameDecoder(max_frame)
    return NativeFrameDecoder(max_frame)
