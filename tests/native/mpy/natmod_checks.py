# Runs under the MicroPython unix port with the flnative natmod on MICROPYPATH (tests/native/
# test_natmod_mpy.py): the natmod against the device Python code in the same interpreter and against
# vectors the CPython side computed with the PyPI libraries. Prints "OK <check>" or raises.
# usage: micropython natmod_checks.py VECTORS.json CHECK
import json
import sys
from array import array
from binascii import unhexlify

import flnative as N
import micropython
from fieldlink.codec import cobs
from fieldlink.codec.crc import crc16
from fieldlink.codec.serialframe import FrameDecoder, encode_frame
from fieldlink.rules.verify import VerifyError, verify
from fieldlink.rules.vm import VM

NONE = -0x40000000


def H(s):
    return unhexlify(s)


class NatDecoder:
    """The scanner through the natmod: feed() like fieldlink.codec.serialframe.FrameDecoder."""

    def __init__(self, max_frame):
        n = N.scan_size(max_frame)
        self.mem = bytearray(n)
        N.scan_init(self.mem, max_frame)
        self.mv = memoryview(self.mem)
        self.off = N.scan_get(self.mem, 10)

    def feed(self, data):
        out = []
        pos = 0
        while True:
            pos = N.scan_feed(self.mem, data, pos)
            if pos < 0:
                return out
            out.append(bytes(self.mv[self.off:self.off + N.scan_get(self.mem, 9)]))

    def stats(self):
        g = N.scan_get
        m = self.mem
        return {"frames": g(m, 4), "crc_errors": g(m, 5), "framing_errors": g(m, 6), "oversize": g(m, 7),
                "bytes_in": g(m, 8)}


def check_codecs(v):
    for item in v["codec"]:
        data = H(item["data"])
        assert N.crc16(data) == crc16(data) == item["crc"], item
        enc = bytearray(len(data) + len(data) // 254 + 1)
        n = N.cobs_encode_into(data, enc, 0)
        assert bytes(enc[:n]) == cobs.encode(data) == H(item["cobs"])
        dec = bytearray(n)
        assert N.cobs_decode_into(enc, n, dec) == len(data) and bytes(dec[:len(data)]) == data
        fr = bytearray(len(data) + 2 + (len(data) + 2) // 254 + 2)
        n = N.frame_encode_into(data, fr)
        assert bytes(fr[:n]) == encode_frame(data) == H(item["frame"])
        # frame_encode: a new bytes object whose hash is computed lazily (built with hash 0)
        fe = N.frame_encode(data)
        assert type(fe) is bytes and fe == H(item["frame"]) and len(fe) == n
        assert hash(fe) == hash(H(item["frame"])) and {fe: 1}[H(item["frame"])] == 1
        assert {H(item["frame"]): 2}[N.frame_encode(bytearray(data))] == 2
        out = bytearray(n)
        assert N.frame_decode_into(fr[:n - 1], out) == len(data) and bytes(out[:len(data)]) == data
    try:
        N.frame_encode("text")
        raise AssertionError("str payload accepted")
    except TypeError:
        pass
    assert N.nop(1, 2) is None
    assert N.frame_decode_into(b"\x02\x41", bytearray(4)) == -4  # FL_E_SHORT
    assert N.cobs_decode_into(b"\x05\x11", 2, bytearray(4)) == -3  # FL_E_COBS_TRUNC


def check_scanner(v):
    for s in v["streams"]:
        stream = H(s["data"])
        mf = s["max_frame"]
        want = [H(p) for p in s["payloads"]]
        py = FrameDecoder(mf)
        assert py.feed(stream) == want
        for cut in range(len(stream) + 1):
            d = NatDecoder(mf)
            got = d.feed(stream[:cut]) + d.feed(stream[cut:])
            assert got == want, (cut, got, want)
            assert d.stats() == py.stats(), (cut, d.stats(), py.stats())
            # scan_feed_list: a whole chunk per call, the payloads appended to the caller's list
            d2 = NatDecoder(mf)
            got = N.scan_feed_list(d2.mem, memoryview(stream)[:cut]) + N.scan_feed_list(d2.mem, stream[cut:])
            assert got == want and all(type(p) is bytes for p in got), (cut, got, want)
            assert d2.stats() == py.stats(), (cut, d2.stats(), py.stats())


class NatVM:
    def __init__(self, blob):
        self.blob = blob
        self.prog = bytearray(N.prog_size())
        self.work = bytearray(N.work_size())
        code = N.verify(blob, self.prog, self.work)
        if code:
            raise VerifyError(N.verify_message(self.work))
        self.st = array("i", bytes(4 * N.prog_get(self.prog, 10)))
        self.stack = array("i", bytes(4 * (N.prog_get(self.prog, 9) + 1)))
        self.out = array("i", bytes(16 * (N.prog_get(self.prog, 11) + 1)))
        N.vm_init(self.prog, self.st)
        self.first = True

    def set_input(self, i, v, now):
        N.vm_set_input(self.prog, self.st, i, v, now)

    def run(self, now, tod, up):
        n = N.vm_run(self.prog, self.blob, self.st, self.stack, self.out, now, tod, up, self.first)
        self.first = False
        return n


class Rng:
    def __init__(self, s):
        self.s = s

    def next(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x


def check_rules(v):
    for item in v["bad"]:
        blob = H(item["blob"])
        try:
            verify(blob)
            py = None
        except VerifyError as e:
            py = str(e)
        try:
            NatVM(blob)
            nat = None
        except VerifyError as e:
            nat = str(e)
        assert nat == py, (nat, py)
    ticks = 0
    for item in v["programs"]:
        blob = H(item["blob"])
        py = VM(verify(H(item["py_blob"])))
        nat = NatVM(blob)
        assert list(nat.st) == list(py.st)
        r = Rng(item["seed"])
        t = 1000
        kinds = py.kinds
        for k in range(item["ticks"]):
            t += r.next() % 5000
            for i in range(len(kinds)):
                x = r.next()
                if x & 1:
                    val = (x >> 1) & 1 if kinds[i] in (3, 4) else (x % 100000) - 50000
                    py.set_input(i, val, t)
                    nat.set_input(i, val, t)
            tod = NONE if r.next() % 10 == 0 else r.next() % 86400000
            n = py.run(t, tod, t)
            assert nat.run(t, tod, t) == n
            assert list(nat.out[:4 * n]) == list(py.out[:4 * n])
            assert list(nat.st) == list(py.st), (k, t)
            ticks += 1
    # switch VMs mid-run without losing state: continue a Python VM's state in the natmod and back
    item = v["programs"][-1]
    blob = H(item["blob"])
    py = VM(verify(H(item["py_blob"])))
    nat = NatVM(blob)
    t = 0
    for k in range(300):
        t += 1000
        for i in range(len(py.kinds)):
            py.set_input(i, (k * 37 + i * 1000) % 90000 - 20000, t)
        n = py.run(t, 3600000 + t, t)
    nat.st[:] = py.st
    nat.first = False
    for k in range(300):
        t += 1000
        for i in range(len(py.kinds)):
            val = (k * 53 + i * 7000) % 90000 - 20000
            py.set_input(i, val, t)
            nat.set_input(i, val, t)
        n = py.run(t, 3600000 + t, t)
        assert nat.run(t, 3600000 + t, t) == n and list(nat.st) == list(py.st)
    print("ticks", ticks)


def check_heap(v):
    """With the natmod a VM tick and a frame decode allocate nothing (heap locked)."""
    item = v["programs"][-1]
    nat = NatVM(H(item["blob"]))
    prog, blob, st, stack, out = nat.prog, nat.blob, nat.st, nat.stack, nat.out
    vm_run = N.vm_run
    vm_set_input = N.vm_set_input
    n_in = N.prog_get(prog, 2)
    s = H(v["streams"][0]["data"])
    d = NatDecoder(v["streams"][0]["max_frame"])
    mem = d.mem
    scan_feed = N.scan_feed
    frame = H(v["codec"][3]["frame"])
    body = frame[:-1]
    dst = bytearray(len(frame))
    frame_decode_into = N.frame_decode_into
    crc = N.crc16
    total = 0
    frames = 0
    micropython.heap_lock()
    try:
        t = 0
        for k in range(500):
            t += 1000
            i = 0
            while i < n_in:
                vm_set_input(prog, st, i, 20000 + k * 10 + i, t)
                i += 1
            total += vm_run(prog, blob, st, stack, out, t, 3600000, t, k == 0)
        for _k in range(20):
            pos = 0
            while True:
                pos = scan_feed(mem, s, pos)
                if pos < 0:
                    break
                frames += 1
            total += frame_decode_into(body, dst)
            total += crc(body)
    finally:
        micropython.heap_unlock()
    assert frames == 20 * len(v["streams"][0]["payloads"]) and total > 0
    print("heap-locked ticks 500, frames", frames)


def check_select(v):
    """fieldlink.runtime.native picks the natmod; the device code (uplink decoder, rules engine, status)
    runs on it with the same results as on the Python code."""
    from fieldlink.codec import native_frame
    from fieldlink.rules.engine import RuleEngine
    from fieldlink.runtime import native

    assert native.impl() == {"frame": "native", "rules": "native"}, native.impl()
    mod = native.module()
    for s in v["streams"]:
        stream = H(s["data"])
        d = native_frame.FrameDecoder(s["max_frame"])
        assert type(d).__name__ == "NativeFrameDecoder"
        native.use(None)
        p = native_frame.FrameDecoder(s["max_frame"])
        native.use(mod)
        assert type(p).__name__ == "FrameDecoder"
        for cut in (0, len(stream) // 3, len(stream)):
            assert d.feed(stream[:cut]) + d.feed(stream[cut:]) == p.feed(stream[:cut]) + p.feed(stream[cut:])
            assert d.stats() == p.stats() and d.buffered() == p.buffered()
    for item in v["codec"]:
        assert native_frame.encode_frame(H(item["data"])) == H(item["frame"])
    blob = H(v["programs"][0]["blob"])  # greenhouse
    py_blob = H(v["programs"][0]["py_blob"])
    e_nat = RuleEngine(path=None)
    e_nat.load(blob, persist=False)
    native.use(None)
    e_py = RuleEngine(path=None)
    e_py.load(py_blob, persist=False)
    e_py.tick(0)
    native.use(mod)
    e_nat.tick(0)
    assert type(e_nat.vm).__name__ == "NativeVM" and type(e_py.vm).__name__ == "VM"
    acts = 0
    for k in range(1, 600):
        t = k * 2000
        r = {"sht": {"temperature": 20 + (k % 97) / 8, "relative_humidity": 50 + k % 30}, "light": {"lux": k % 900}}
        a = e_nat.tick(t, r, tod_ms=(t * 37) % 86400000)
        assert a == e_py.tick(t, r, tod_ms=(t * 37) % 86400000), k
        assert list(e_nat.vm.st) == list(e_py.vm.st), k
        acts += len(a)
    assert acts > 0
    vm = e_nat.vm
    micropython.heap_lock()
    try:
        for k in range(200):
            vm.set_input(0, 21000 + k, 2000000 + k * 1000)
            vm.run(2000000 + k * 1000, 3600000, 5000)
    finally:
        micropython.heap_unlock()
    # gateway and node status name the implementation
    from test_gateway import GwRig, res_of
    from test_node import Rig
    from test_node_support import run

    async def gw():
        r = GwRig()
        msgs = await r.cmd(6, "status")
        return res_of(msgs, 6)[0]["r"]["impl"]

    async def node():
        r = Rig()
        return (await r.cmd("status"))["st"]["impl"]

    want = {"frame": "native", "rules": "native"}
    assert run(gw()) == want and run(node()) == want
    print("select", acts)


CHECKS = {"select": check_select, "codecs": check_codecs, "scanner": check_scanner, "rules": check_rules, "heap": check_heap}

if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        vectors = json.load(f)
    CHECKS[sys.argv[2]](vectors)
    print("OK", sys.argv[2])
