# The gateway's serial transport write path. Regression: on the MicroPython unix port a pty opened with
# open(path, "wb") is a FileIO whose flush() is fsync(), which fails with EINVAL on a tty; the write had
# succeeded, but write() reported failure, so the Uplink counted write_errors and wrote every frame again
# (the host saw each gateway message twice). Found by tests/system/test_farm_air.py.
from fieldlink.gateway import uplink


class FakeStream:
    def __init__(self, flush_error=None, chunk=None, fail_after=None):
        self.out = bytearray()
        self.flush_error = flush_error
        self.chunk = chunk          # accept at most this many bytes per write() (short writes)
        self.fail_after = fail_after
        self.calls = 0

    def write(self, data):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise OSError(5)
        n = len(data) if self.chunk is None else min(self.chunk, len(data))
        self.out.extend(bytes(data[:n]))
        return n

    def flush(self):
        if self.flush_error is not None:
            raise OSError(self.flush_error)


class _Writer(uplink._PollReader):
    def __init__(self, fout):   # the write path only: no streams to poll
        self.fout = fout


def _transport(stream):
    return _Writer(stream)


def test_flush_einval_is_not_a_failed_write():
    s = FakeStream(flush_error=22)
    assert _transport(s).write(b"\x01\x02\x03\x00") is True
    assert bytes(s.out) == b"\x01\x02\x03\x00"


def test_short_writes_are_completed():
    s = FakeStream(chunk=3)
    frame = bytes(range(1, 11)) + b"\x00"
    assert _transport(s).write(frame) is True
    assert bytes(s.out) == frame and s.calls == 4


def test_a_real_write_error_is_reported():
    s = FakeStream(chunk=4, fail_after=1)
    assert _transport(s).write(b"abcdefgh\x00") is False


def test_uplink_sends_each_frame_once_when_flush_fails():
    class T:
        def __init__(self):
            self.s = FakeStream(flush_error=22)
            self.t = _transport(self.s)

        def writable(self):
            return True

        def write(self, data):
            return self.t.write(data)

    tr = T()
    up = uplink.Uplink(tr, boot=1, clock=lambda: 0)
    up.present = True
    for i in range(3):
        up.send({"t": "tel", "i": i})
    assert up.transmit(0) == 3
    assert up.transmit(0) == 0          # nothing is written twice
    assert up.counters["write_errors"] == 0 and up.counters["tx_frames"] == 3
    assert bytes(tr.s.out).count(b"\x00") == 3
