"""Run the C core in lockstep with the Python device code.

LockstepVM is the Python VM (fieldlink.rules.vm.VM) that, on every run(), also runs the C VM on a copy
of the Python state taken just before the tick (so the C VM continues any Python state, the property a
node needs to switch VMs) and asserts identical action count, output words and state words after the
tick. checked_verify() verifies with both verifiers and asserts the same verdict and the same message.

Number model: the lead's model clamps PUSHK constants to [-MAXV, MAXV] (NONE excepted) and saturates
NEG. A Python VM that predates it (python_vm_clamps() is False) is run on a copy of the program with
its constants clamped, which is the same thing for PUSHK; programs whose input initial values use an
out-of-range constant are then not comparable and are counted in STATS["incomparable"]."""

from __future__ import annotations

import struct
from typing import Any

from ccore import MASK, Core, CoreError
from ccore import VM as CVM
from fieldlink.rules import verify as pyverify
from fieldlink.rules import vm as pyvm

MAXV = 0x3FFFFFFF
NONE = -0x40000000
STATS = {"ticks": 0, "vms": 0, "verified": 0, "rejected": 0, "incomparable": 0}


def _const_range(blob: bytes) -> tuple[int, int]:
    ni, nw, nk = blob[6], blob[7], blob[8]
    at = 28 + 4 * ni + 2 * nw
    return at, nk


def _probe_blob() -> bytes:
    """rule 'p': when PUSHK 0 (2**31 - 1) > PUSHK 1 (MAXV) then RON relay 0 -- true only without clamping"""
    strs = b"\x01p\x07relay.k"
    code = bytes([0x01, 0, 0x01, 1, 0x12, 0x40, 0])
    body = (bytes([3, 0xFF, 1, 0]) + struct.pack("<ii", 0x7FFFFFFF, MAXV)
            + struct.pack("<BBHHHii", 0, 0, 5, 7, 7, 0, 0) + strs + code)
    head = b"FLRV" + bytes([1, 0, 1, 0, 2, 1, 2, 0])
    head += struct.pack("<HHHHHHI", len(code), len(strs), 2, 6, 1, 0, 28 + len(body) + 4)
    return head + body + struct.pack("<I", pyverify.crc32(head + body))


def python_vm_clamps() -> bool:
    """Does fieldlink.rules.vm clamp PUSHK constants (the lead's number model)? Probed by behaviour."""
    vm = pyvm.VM(pyverify.verify(_probe_blob()))
    return vm.run(0) == 0


def model_blob(blob: bytes) -> bytes | None:
    """The program the old Python VM must run to follow the number model (consts clamped), or None if
    an input's initial value uses an out-of-range constant (not comparable)."""
    at, nk = _const_range(blob)
    ks = [struct.unpack_from("<i", blob, at + 4 * j)[0] for j in range(nk)]
    bad = {j for j, k in enumerate(ks) if k != NONE and not -MAXV <= k <= MAXV}
    if not bad:
        return blob
    for j in range(blob[6]):
        if blob[28 + 4 * j + 1] in bad:
            return None
    b = bytearray(blob[:-4])
    for j in bad:
        struct.pack_into("<i", b, at + 4 * j, max(-MAXV, min(MAXV, ks[j])))
    return bytes(b) + struct.pack("<I", pyverify.crc32(bytes(b)))


def checked_verify(core: Core, blob: Any) -> Any:
    """verify.verify(blob) plus the C verifier: same acceptance, same reason text."""
    raw = bytes(blob)
    try:
        p = pyverify.verify(raw)
    except pyverify.VerifyError as e:
        c_msg = None
        try:
            core.verify(raw)
        except CoreError as ce:
            c_msg = str(ce)
        assert c_msg is not None, f"C verifier accepted a program Python rejects ({e})"
        assert c_msg == str(e), f"C verifier: {c_msg} / Python: {e!s}"
        STATS["rejected"] += 1
        raise
    core.verify(raw)  # raises if C refuses what Python accepts
    STATS["verified"] += 1
    return p


def make_lockstep(core: Core) -> type:
    base = pyvm.VM

    class LockstepVM(base):  # type: ignore[misc,valid-type]
        def __init__(self, prog: Any) -> None:
            raw = bytes(prog.raw)
            self.c_prog = core.verify(raw)
            blob = raw if python_vm_clamps() else model_blob(raw)
            self.comparable = blob is not None
            if blob is not None and blob != raw:
                prog = pyverify.verify(blob)
            super().__init__(prog)
            STATS["vms"] += 1
            c = CVM(self.c_prog)
            if self.comparable:
                assert list(self.st) == c.st, "initial state differs"
            else:
                STATS["incomparable"] += 1

        def run(self, now: int, tod: int = NONE, uptime: int = 0) -> int:
            c = CVM(self.c_prog, st=self.st, started=self.started)
            n = super().run(now, tod, uptime)
            if not self.comparable:
                return int(n)
            nc = c.run(now & MASK, tod, uptime)
            assert nc == n, f"actions: C {nc}, Python {n} at {now}"
            assert c.out[: 4 * n] == list(self.out[: 4 * n]), f"outputs differ at {now}"
            assert c.st == list(self.st), f"state differs at {now}: C {c.st} Python {list(self.st)}"
            STATS["ticks"] += 1
            return int(n)

    return LockstepVM
