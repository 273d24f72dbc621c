"""ctypes binding of native/core for the CPython tests: the same calls as the device modules
(fieldlink.codec.crc/cobs/serialframe, fieldlink.rules.verify/vm), backed by the C core built by native_build.py."""

from __future__ import annotations

import ctypes as C
from array import array
from typing import Any

E_SPACE, E_COBS_ZERO, E_COBS_TRUNC, E_SHORT, E_CRC, E_ARG = -1, -2, -3, -4, -5, -6
MASK = 0x3FFFFFFF
NONE = -0x40000000


class Scanner(C.Structure):
    _fields_ = [(n, C.c_uint32) for n in ("max_frame", "cap", "fill", "skip", "frames", "crc_errors",
                                          "framing_errors", "oversize", "bytes_in", "plen")]


class VErr(C.Structure):
    _fields_ = [("code", C.c_int32), ("rule", C.c_int32), ("seg", C.c_int32), ("arg", C.c_int32 * 4)]


class CoreError(ValueError):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Core:
    def __init__(self, path: str) -> None:
        lib = C.CDLL(path)
        self.lib = lib
        u8p, sz = C.c_char_p, C.c_size_t
        lib.fl_crc16.restype = C.c_uint16
        lib.fl_crc16.argtypes = [u8p, sz, C.c_uint16]
        lib.fl_crc32.restype = C.c_uint32
        lib.fl_crc32.argtypes = [u8p, sz]
        for name in ("fl_cobs_encode", "fl_cobs_decode", "fl_frame_encode", "fl_frame_decode"):
            f = getattr(lib, name)
            f.restype = C.c_int32
            f.argtypes = [u8p, sz, C.c_void_p, sz]
        for name in ("fl_cobs_max_encoded", "fl_frame_max_encoded"):
            getattr(lib, name).restype = sz
            getattr(lib, name).argtypes = [sz]
        lib.fl_scan_size.restype = sz
        lib.fl_scan_size.argtypes = [C.c_uint32]
        lib.fl_scan_init.argtypes = [C.c_void_p, sz, C.c_uint32]
        lib.fl_scan_feed.argtypes = [C.c_void_p, u8p, sz, C.POINTER(sz)]
        lib.fl_scan_payload.restype = C.c_void_p
        lib.fl_scan_payload.argtypes = [C.c_void_p]
        lib.fl_scan_reset.argtypes = [C.c_void_p]
        for name in ("fl_sizeof_prog", "fl_sizeof_vwork", "fl_sizeof_verr"):
            getattr(lib, name).restype = sz
        lib.fl_verify.argtypes = [u8p, sz, C.c_void_p, C.c_void_p, C.POINTER(VErr)]
        lib.fl_verify_message.restype = sz
        lib.fl_verify_message.argtypes = [C.POINTER(VErr), C.c_char_p, sz]
        lib.fl_verify_code_name.restype = C.c_char_p
        lib.fl_verify_code_name.argtypes = [C.c_int]
        i32p = C.POINTER(C.c_int32)
        lib.fl_vm_init.argtypes = [C.c_void_p, i32p, sz]
        lib.fl_vm_set_input.argtypes = [C.c_void_p, i32p, C.c_uint32, C.c_int32, C.c_int32]
        lib.fl_vm_run.argtypes = [C.c_void_p, u8p, sz, i32p, sz, i32p, sz, i32p, sz, C.c_int32, C.c_int32,
                                  C.c_int32, C.c_int]
        self.prog_size = lib.fl_sizeof_prog()
        self.work_size = lib.fl_sizeof_vwork()

    # ---- codecs ----
    def crc16(self, data: bytes, crc: int = 0xFFFF) -> int:
        return int(self.lib.fl_crc16(bytes(data), len(data), crc))

    def crc32(self, data: bytes) -> int:
        return int(self.lib.fl_crc32(bytes(data), len(data)))

    def _call(self, fn: Any, data: bytes, cap: int) -> bytes:
        out = C.create_string_buffer(max(cap, 1))
        n = fn(bytes(data), len(data), out, cap)
        if n < 0:
            raise CoreError(n)
        return out.raw[:n]

    def cobs_encode(self, data: bytes) -> bytes:
        return self._call(self.lib.fl_cobs_encode, data, self.lib.fl_cobs_max_encoded(len(data)))

    def cobs_decode(self, data: bytes) -> bytes:
        return self._call(self.lib.fl_cobs_decode, data, len(data))

    def encode_frame(self, payload: bytes) -> bytes:
        return self._call(self.lib.fl_frame_encode, payload, self.lib.fl_frame_max_encoded(len(payload)))

    def decode_frame(self, body: bytes) -> bytes:
        return self._call(self.lib.fl_frame_decode, body, len(body))

    def decoder(self, max_frame: int = 1024) -> FrameDecoder:
        return FrameDecoder(self, max_frame)

    # ---- rules ----
    def verify(self, blob: bytes) -> Prog:
        """A verified program, or CoreError whose .code is the reason code and str() the message."""
        blob = bytes(blob)
        prog = C.create_string_buffer(self.prog_size)
        work = C.create_string_buffer(self.work_size)
        err = VErr()
        code = self.lib.fl_verify(blob, len(blob), prog, work, C.byref(err))
        if code:
            buf = C.create_string_buffer(200)
            self.lib.fl_verify_message(C.byref(err), buf, 200)
            e = CoreError(code)
            e.args = (buf.value.decode(),)
            e.code = code
            raise e
        return Prog(self, blob, prog)

    def code_name(self, code: int) -> str:
        return str(self.lib.fl_verify_code_name(code).decode())


class FrameDecoder:
    """fieldlink.codec.serialframe.FrameDecoder over fl_scan_*."""

    def __init__(self, core: Core, max_frame: int) -> None:
        self.lib = core.lib
        size = self.lib.fl_scan_size(max_frame)
        self.mem = (C.c_uint32 * ((size + 3) // 4))()
        if self.lib.fl_scan_init(self.mem, size, max_frame) != 0:
            raise ValueError("bad max_frame")
        self.s = Scanner.from_buffer(self.mem)

    def feed(self, data: bytes) -> list[bytes]:
        data = bytes(data)
        pos = C.c_size_t(0)
        out = []
        while self.lib.fl_scan_feed(self.mem, data, len(data), C.byref(pos)) == 1:
            out.append(C.string_at(self.lib.fl_scan_payload(self.mem), self.s.plen))
        assert pos.value == len(data)
        return out

    def reset(self) -> None:
        self.lib.fl_scan_reset(self.mem)

    def buffered(self) -> int:
        return int(self.s.fill)

    def stats(self) -> dict[str, int]:
        s = self.s
        return {"frames": s.frames, "crc_errors": s.crc_errors, "framing_errors": s.framing_errors,
                "oversize": s.oversize, "bytes_in": s.bytes_in}


class Prog:
    def __init__(self, core: Core, blob: bytes, mem: Any) -> None:
        self.core = core
        self.blob = blob
        self.mem = mem
        h = blob
        self.n_inputs, self.n_rules, self.n_hyst = h[6], h[9], h[11]
        self.max_stack = h[16] | h[17] << 8
        self.state_words = h[18] | h[19] << 8
        self.n_actions = h[20] | h[21] << 8


class VM:
    """fieldlink.rules.vm.VM over fl_vm_*: st, out are int32 arrays of the same layout."""

    def __init__(self, prog: Prog, st: array | None = None, started: bool = False) -> None:
        self.p = prog
        self.lib = prog.core.lib
        self.st_c = (C.c_int32 * max(1, prog.state_words))()
        self.stack = (C.c_int32 * (prog.max_stack + 1))()
        self.out_c = (C.c_int32 * (4 * (prog.n_actions + 1)))()
        if st is None:
            assert self.lib.fl_vm_init(prog.mem, self.st_c, prog.state_words) == 0
        else:
            for i, v in enumerate(st):
                self.st_c[i] = v
        self.started = started

    @property
    def st(self) -> list[int]:
        return list(self.st_c[: self.p.state_words])

    @property
    def out(self) -> list[int]:
        return list(self.out_c)

    def set_input(self, i: int, value: int, now: int) -> None:
        v = max(-0x7FFFFFFF, min(0x7FFFFFFF, value))
        assert self.lib.fl_vm_set_input(self.p.mem, self.st_c, i, v, now & MASK) == 0

    def run(self, now: int, tod: int = NONE, uptime: int = 0) -> int:
        up = min(uptime, 0x7FFFFFFF)
        n = self.lib.fl_vm_run(self.p.mem, self.p.blob, len(self.p.blob), self.st_c, self.p.state_words,
                               self.stack, len(self.stack), self.out_c, len(self.out_c), now & MASK, tod, up,
                               0 if self.started else 1)
        self.started = True
        if n < 0:
            raise RuntimeError(f"fl_vm_run failed: {n}")
        return int(n)
