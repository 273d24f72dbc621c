"""Differential test of the rules number model (docs/rules.md "Numbers"): random verified programs
(mutations of compiled ones, constants pushed to the limits) tick with random readings on CPython and
on the MicroPython unix port; outputs and the whole VM state after every tick must be identical, and no
case may raise. A native VM is held to the same corpus by running it instead of the Python one."""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fieldlink.rules import opcodes as O
from fieldlink.rules.verify import VerifyError, crc32, verify
from fieldlink.rules.vm import VM
from fieldlink_host.paths import micropython_binary, micropython_path
from fieldlink_host.rules.compiler import compile_text

pytestmark = pytest.mark.fuzz

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CASES = 300
MAXV = 2**30 - 1
NONE = -(2**30)
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
#: the values where saturation and overflow bugs live
EXTREMES = [0, 1, -1, 999, 1000, -1000, MAXV, -MAXV, MAXV - 1, -MAXV + 1, MAXV // 1000, NONE + 1,
            INT32_MIN, INT32_MAX, NONE, MAXV + 1, 46341, -46341, 2**20, -(2**20)]

SEEDS = [
    (ROOT / "examples" / "greenhouse.rules.yaml").read_text(),
    """
board: sim-node
vars: {a: 0, b: 0, c: 0}
rules:
  - name: arith
    when: sht.temperature * light.lux / 3 - 1000000 > var.a + 1 hyst 2
    then:
      - set: a
        value: var.a * 1000000 + sht.temperature * sht.temperature
      - set: b
        value: -(var.a - 999999) / (light.lux - 100)
      - on: fan
    else:
      - set: c
        value: var.c - 1000000 * 1000000
      - off: fan
  - name: aggs
    when: avg(sht.temperature, 4) - min(light.lux, 4) < max(sht.temperature, 4) * 2 and rate(light.lux, 2m) > -5
    then:
      - set: b
        value: avg(light.lux, 3) + rate(sht.temperature, 1m) * 1000
""",
]


class Rng:
    def __init__(self, seed: int) -> None:
        self.s = seed

    def below(self, n: int) -> int:
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x % n


def _seal(body: bytearray) -> bytes:
    struct.pack_into("<I", body, 24, len(body) + O.CRC_SIZE)
    return bytes(body) + struct.pack("<I", crc32(bytes(body)))


def corpus(n: int = CASES, seed: int = 2026) -> list[dict[str, Any]]:
    """``n`` verified mutants with tick sequences; deterministic for a seed."""
    r = Rng(seed)
    seeds = [compile_text(t).program for t in SEEDS]
    out: list[dict[str, Any]] = []
    tries = 0
    while len(out) < n and tries < 200 * n:
        tries += 1
        src = seeds[tries % len(seeds)]
        b = bytearray(src[:-O.CRC_SIZE])
        for _ in range(1 + r.below(3)):
            if r.below(2):  # a 32-bit word set to an extreme value (hits the constant table)
                pos = O.HEADER_SIZE + r.below(len(b) - O.HEADER_SIZE - 3)
                struct.pack_into("<i", b, pos, EXTREMES[r.below(len(EXTREMES))] if r.below(4) else
                                 (r.below(1 << 32) - (1 << 31)))
            else:
                b[O.HEADER_SIZE + r.below(len(b) - O.HEADER_SIZE)] = r.below(256)
        blob = _seal(b)
        try:
            prog = verify(blob)
        except VerifyError:
            continue
        steps = []
        now = r.below(1 << 30)
        for _ in range(6):
            now = (now + r.below(90_000)) & 0x3FFFFFFF
            inputs = [[i, EXTREMES[r.below(len(EXTREMES))] if r.below(2) else r.below(200_000) - 100_000]
                      for i in range(len(prog.input_kind)) if r.below(3)]
            tod = NONE if not r.below(5) else r.below(86_400_000)
            steps.append([now, tod, r.below(1 << 31), inputs])
        out.append({"blob": blob.hex(), "steps": steps})
    return out


def run_cpython(cases: list[dict[str, Any]]) -> list[Any]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("rules_diff_runner", HERE / "rules_diff_runner.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return [mod.run_case(c) for c in cases]


def run_micropython(cases: list[dict[str, Any]], tmp: Path) -> list[Any]:
    path = tmp / "corpus.json"
    path.write_text("".join(json.dumps(c) + "\n" for c in cases))
    proc = subprocess.run([micropython_binary(), "-X", "heapsize=16M", str(HERE / "rules_diff_runner.py"), str(path)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MICROPYPATH": micropython_path()})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_corpus_is_meaningful() -> None:
    cases = corpus(60)
    assert len(cases) == 60
    res = run_cpython(cases)
    fired = sum(1 for x in res for t in x.get("ticks", []) if t[0] > 0)
    assert fired > 0  # some mutants do act: the comparison below covers outputs, not only state


def test_pushk_int32_min_neg_saturates() -> None:
    # the example: PUSHK INT32_MIN; NEG. PUSHK clamps the constant to -MAXV, NEG gives MAXV
    # (docs/rules.md "Numbers"); before, CPython raised OverflowError and MicroPython wrapped.
    text = ("board: sim-node\nvars: {a: 0, b: 0}\nrules:\n  - name: r\n    when: true\n    then:\n"
            "      - set: a\n        value: -(12345 + var.b)\n")
    blob = bytearray(compile_text(text).program[:-4])
    pos = bytes(blob).find(struct.pack("<i", 12345000))
    code = bytes(blob).find(bytes([O.LOAD, 1, O.ADD, O.NEG, O.SETV, 0]))
    assert pos > 0 and code > 0
    struct.pack_into("<i", blob, pos, INT32_MIN)
    blob[code:code + 6] = bytes([O.NEG, O.NEG, O.NEG, O.NEG, O.SETV, 0])  # PUSHK INT32_MIN; NEG x4; SETV a
    prog = verify(_seal(blob))
    vm = VM(prog)
    vm.run(0, NONE, 0)
    assert vm.get_input(prog.input_names.index("var.a")) == -MAXV  # -MAXV negated 4 times
    res = run_cpython([{"blob": _seal(blob).hex(), "steps": [[0, NONE, 0, []]]}])
    assert "error" not in res[0]


def _in_model(cases: list[dict[str, Any]], results: list[Any]) -> list[tuple[int, int]]:
    """(case, value) for every input value outside [-MAXV, MAXV] and not NONE: the model forbids them."""
    bad = []
    for i, (c, r) in enumerate(zip(cases, results, strict=True)):
        n_in = len(verify(bytes.fromhex(c["blob"])).input_kind)
        for _, _, st in r.get("ticks", []):
            bad += [(i, st[3 * j]) for j in range(n_in) if st[3 * j] != NONE and abs(st[3 * j]) > MAXV]
    return bad


def test_cpython_and_micropython_agree(tmp_path: Path) -> None:
    cases = corpus()
    assert len(cases) == CASES
    cp = run_cpython(cases)
    errors = [(i, x) for i, x in enumerate(cp) if "error" in x]
    assert not errors, errors[:3]
    assert not _in_model(cases, cp)[:5]
    mp = run_micropython(cases, tmp_path)
    assert len(mp) == len(cp)
    diff = [i for i, (a, b) in enumerate(zip(cp, mp, strict=True)) if a != b]
    assert not diff, f"{len(diff)} of {len(cp)} cases differ, first {diff[:5]}: {cases[diff[0]]['blob']}"
