# Native C core vs pure MicroPython vs @micropython.viper, side by side in one run on the unix port:
#
#   python bench/native.py [--quick] [--json] [--natmod DIR_WITH_flnative.mpy]
#
# framing: the device's own serial-frame API, as the gateway uplink calls it: encode_frame() for every
# payload of a round, then FrameDecoder.feed() over the round's byte stream in 512-byte reads (the uplink's
# read size). pure = fieldlink.codec.serialframe (the fallback the device runs without the natmod),
# natmod = fieldlink.codec.native_frame on flnative, viper = the same algorithm under @micropython.viper
# (low-level, no FrameDecoder). Rounds: 16 frames of one payload size (12 B ack/hb, 110 B telemetry or
# heartbeat, 400 B status result, 828 B ota_data, 1024 B the maximum) and the MIX: 4 x 12 + 8 x 110 +
# 1 x 400 + 3 x 828 B (a gateway relaying telemetry during an OTA upload, docs/native.md).
# framing_speedup = the mix.
# MB/s = payload bytes per second. floor: flnative.nop(a, b), the binding's call cost.
# VM: ticks/s of the rules VM for 1, 20 and 100 rules (bench/rules.py programs, fresh readings for every
# sensor each tick); natmod = native/natmod built for x64 (into a temp dir unless --natmod).
# Timing: best of ~2 ms batches, the candidates of one row taking turns batch by batch (same load).
# Targets (docs/native.md): framing >= 50x, VM >= 30x pure MicroPython.
# This file must stay MicroPython-compatible down to the `if __name__` block.
# ruff: noqa: UP031
import sys

from _bench import IS_MPY
from _bench import now as _now
from _bench import secs as _secs

NONE = -0x40000000


def _reps(fn, batch):
    fn()
    reps = 1
    while True:
        t0 = _now()
        for _ in range(reps):
            fn()
        if _secs(t0, _now()) >= batch:
            return reps
        reps *= 2


def _rates(funcs, units, min_time, batch=0.002):
    """name -> units per second of funcs[name](): the best of many short timed batches (about `batch`
    seconds each). The candidates take turns batch by batch, so that a load change on this shared
    machine hits all of them alike (the ratios are what the bench is for); about min_time each."""
    names = list(funcs)
    reps = {k: _reps(funcs[k], batch) for k in names}
    best = {k: 1e9 for k in names}
    spent = {k: 0.0 for k in names}
    while min(spent.values()) < min_time:
        for k in names:
            fn = funcs[k]
            t0 = _now()
            for _ in range(reps[k]):
                fn()
            dt = _secs(t0, _now())
            spent[k] += dt
            if dt < best[k]:
                best[k] = dt
    return {k: units * reps[k] / max(best[k], 1e-9) for k in names}


# payload bytes (msgpack sizes of real uplink messages, docs/native.md): 12 ack/hb, 110 tel/nhb, 400 a status
# result, 828 ota_data (768 data bytes), 1024 the maximum; 16 frames of each size per round
SIZES = (12, 110, 400, 828, 1024)
MIX = (12, 12, 12, 12, 110, 110, 110, 110, 110, 110, 110, 110, 400, 828, 828, 828)
READ = 512  # the uplink reads at most this many bytes at a time (gateway/uplink.py _PollReader)


def _payloads(sizes):
    out = []
    x = 1
    for size in sizes:
        b = bytearray(size)
        for i in range(size):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
            v = (x >> 16) & 0xFF
            b[i] = 0 if v < 16 else v
        out.append(bytes(b))
    return out


if IS_MPY:
    from array import array

    import micropython

    @micropython.viper
    def _v_crc16(buf, n: int, tab) -> int:
        b = ptr8(buf)  # noqa: F821 (viper builtin)
        t = ptr16(tab)  # noqa: F821
        crc = 0xFFFF
        i = 0
        while i < n:
            crc = ((crc << 8) & 0xFFFF) ^ t[((crc >> 8) ^ b[i]) & 0xFF]
            i += 1
        return crc

    @micropython.viper
    def _v_cobs_encode(src, n: int, dst) -> int:
        s = ptr8(src)  # noqa: F821
        d = ptr8(dst)  # noqa: F821
        o = 1
        cp = 0
        code = 1
        opened = 1
        i = 0
        while i < n:
            if opened == 0:
                cp = o
                o += 1
                code = 1
                opened = 1
            b = s[i]
            if b == 0:
                d[cp] = code
                cp = o
                o += 1
                code = 1
            else:
                d[o] = b
                o += 1
                code += 1
                if code == 0xFF:
                    d[cp] = 0xFF
                    opened = 0
            i += 1
        if opened:
            d[cp] = code
        return o

    @micropython.viper
    def _v_cobs_decode(src, start: int, end: int, dst) -> int:
        s = ptr8(src)  # noqa: F821
        d = ptr8(dst)  # noqa: F821
        i = start
        o = 0
        while i < end:
            code = s[i]
            if code == 0 or i + code > end:
                return -1
            j = i + 1
            i += code
            while j < i:
                d[o] = s[j]
                o += 1
                j += 1
            if code != 0xFF and i < end:
                d[o] = 0
                o += 1
        return o


def framing_funcs(natmod, sizes):
    """name -> callable doing one round (encode every payload, decode the stream in READ-byte chunks)."""
    from fieldlink.codec import native_frame
    from fieldlink.codec.crc import _TABLE
    from fieldlink.codec.serialframe import FrameDecoder, encode_frame
    from fieldlink.runtime import native

    payloads = _payloads(sizes)
    nf = len(payloads)
    stream = b"".join(encode_frame(p) for p in payloads)
    smv = memoryview(stream)
    chunks = [smv[i:i + READ] for i in range(0, len(stream), READ)]
    funcs = {}

    def round_with(enc, dec):
        def run():
            for p in payloads:
                enc(p)
            got = 0
            for c in chunks:
                got += len(dec.feed(c))
            if got != nf:
                raise RuntimeError("decode: %d of %d frames" % (got, nf))
        return run

    funcs["pure"] = round_with(encode_frame, FrameDecoder())

    big = max(sizes)
    tab = array("H", _TABLE)
    work = bytearray(big + 2)
    vout = bytearray(big + 16)
    vdec = bytearray(big + 16)

    def viper():
        for p in payloads:
            n = len(p)
            work[:n] = p
            c = _v_crc16(p, n, tab)
            work[n] = c >> 8
            work[n + 1] = c & 0xFF
            m = _v_cobs_encode(work, n + 2, vout)
            vout[m] = 0
            bytes(memoryview(vout)[:m + 1])
        got = 0
        pos = 0
        mv = memoryview(vdec)
        while True:
            z = stream.find(b"\x00", pos)
            if z < 0:
                break
            m = _v_cobs_decode(stream, pos, z, vdec)
            pos = z + 1
            if m >= 2 and _v_crc16(vdec, m - 2, tab) == (vdec[m - 2] << 8) | vdec[m - 1]:
                bytes(mv[:m - 2])
                got += 1
        if got != nf:
            raise RuntimeError("viper decode")
    funcs["viper"] = viper

    if natmod is not None:
        native.use(natmod)
        funcs["natmod"] = round_with(native_frame.encode_frame, native_frame.FrameDecoder())
        if encode_frame(payloads[-1]) != native_frame.encode_frame(payloads[-1]):
            raise RuntimeError("natmod frame differs")
    return funcs, sum(sizes)


def vm_runners(natmod, blob):
    from fieldlink.rules.verify import verify
    from fieldlink.rules.vm import VM

    vm = VM(verify(blob))
    kinds = vm.kinds
    n_in = len(kinds)
    state = [0]

    def pure():
        k = state[0]
        t = k * 1000
        i = 0
        while i < n_in:
            if kinds[i] == 1:
                vm.set_input(i, 20000 + ((k * 7 + i * 13) % 200) * 100, t)
            i += 1
        vm.run(t, 3600000, t)
        state[0] = k + 1

    runners = {"pure": pure}
    if natmod is not None:
        N = natmod
        prog = bytearray(N.prog_size())
        work = bytearray(N.work_size())
        if N.verify(blob, prog, work):
            raise RuntimeError(N.verify_message(work))
        st = array("i", bytes(4 * N.prog_get(prog, 10)))
        stack = array("i", bytes(4 * (N.prog_get(prog, 9) + 1)))
        out = array("i", bytes(16 * (N.prog_get(prog, 11) + 1)))
        N.vm_init(prog, st)
        set_input = N.vm_set_input
        run = N.vm_run
        nstate = [0]

        def native():
            k = nstate[0]
            t = k * 1000
            i = 0
            while i < n_in:
                if kinds[i] == 1:
                    set_input(prog, st, i, 20000 + ((k * 7 + i * 13) % 200) * 100, t)
                i += 1
            run(prog, blob, st, stack, out, t, 3600000, t, k == 0)
            nstate[0] = k + 1
        runners["natmod"] = native
    return runners


def _worker(argv):
    import json
    try:
        import flnative
    except ImportError:
        flnative = None
    quick = "--quick" in argv
    t = 0.1 if quick else 0.5
    res = {"framing": {}, "vm": {}}
    for name, sizes in [(str(n), (n,) * 16) for n in SIZES] + [("mix", MIX)]:
        funcs, nbytes = framing_funcs(flnative, sizes)
        res["framing"][name] = _rates(funcs, nbytes, t)
    if flnative is not None and hasattr(flnative, "nop"):  # older modules have no nop
        nop = flnative.nop
        res["nop_calls_per_s"] = _rates({"nop": lambda: nop(1, 2)}, 1, t)["nop"]
    for path in argv:
        if not path.endswith(".bin"):
            continue
        with open(path, "rb") as f:
            blob = f.read()
        n = path.split("/")[-1][1:-4]
        res["vm"][n] = _rates(vm_runners(flnative, blob), 1, t)
    print("@@BENCH " + json.dumps(res))


def main(argv):
    import argparse
    import json
    import os
    import tempfile

    ap = argparse.ArgumentParser(description="native C core vs pure MicroPython vs viper (unix port)")
    ap.add_argument("--quick", action="store_true", help="short measurements (smoke run)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--natmod", help="directory holding flnative.mpy (default: build it for x64 now)")
    args = ap.parse_args(argv)
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    sys.path[:0] = [os.path.join(root, "device"), os.path.join(root, "host"), os.path.join(root, "native", "natmod")]
    import rules as rules_bench
    from _bench import run_micropython
    from fieldlink_host.rules.compiler import compile_text  # noqa: F401 (rules.program needs it)

    with tempfile.TemporaryDirectory() as d:
        natdir = args.natmod
        if natdir is None:
            import natmod_build
            natdir = str(natmod_build.build("x64", d).parent)
        progs = []
        for n in (1, 20, 100):
            p = os.path.join(d, "p%d.bin" % n)
            with open(p, "wb") as f:
                f.write(rules_bench.program(n))
            progs.append(p)
        proc = run_micropython(os.path.abspath(__file__), ["--worker"] + (["--quick"] if args.quick else []) + progs,
                               extra_path=[natdir, here])
    res = None
    for line in proc.stdout.splitlines():
        if line.startswith("@@BENCH "):
            res = json.loads(line[8:])
    if res is None or "natmod" not in res["framing"]["mix"]:
        raise SystemExit("benchmark worker failed (rc %d):\n%s%s" % (proc.returncode, proc.stdout, proc.stderr))
    out = {"framing_MBps": {}, "vm_ticks_per_s": res["vm"]}
    if "nop_calls_per_s" in res:
        out["natmod_call_floor_ns"] = 1e9 / res["nop_calls_per_s"]
    for size, fr in res["framing"].items():
        out["framing_MBps"][size] = {k: v / 1e6 for k, v in fr.items()}
        out["framing_speedup_%s" % size] = fr["natmod"] / fr["pure"]
        out["framing_speedup_viper_%s" % size] = fr["viper"] / fr["pure"]
    # the headline framing figure: the realistic mix of frame sizes (MIX), not the bulk 1 KiB case
    out["framing_speedup"] = out["framing_speedup_mix"]
    for n, r in res["vm"].items():
        out["vm_speedup_%s" % n] = r["natmod"] / r["pure"]
    if args.json:
        print(json.dumps(out, indent=1, sort_keys=True))
        return 0
    print("fieldlink native core on the MicroPython unix port (x64), one run, side by side")
    print("%-30s %14s %14s %14s %9s %9s" % ("", "pure", "viper", "natmod", "natmod/x", "viper/x"))
    print("-" * 96)
    for size in [str(n) for n in SIZES] + ["mix"]:
        fr = res["framing"][size]
        label = "framing enc+dec, mix (%d frames)" % len(MIX) if size == "mix" else "framing enc+dec 16x%s B" % size
        print("%-30s %9.2f MB/s %9.2f MB/s %9.2f MB/s %8.1fx %8.1fx" % (
            label, fr["pure"] / 1e6, fr["viper"] / 1e6, fr["natmod"] / 1e6,
            fr["natmod"] / fr["pure"], fr["viper"] / fr["pure"]))
    for n in ("1", "20", "100"):
        r = res["vm"][n]
        print("%-30s %9.0f t/s  %14s %9.0f t/s  %8.1fx %9s" % (
            "VM tick, %s rules" % n, r["pure"], "n/a", r["natmod"], out["vm_speedup_%s" % n], "n/a"))
    if "natmod_call_floor_ns" in out:
        print("natmod call floor (flnative.nop(a, b) from Python): %.0f ns" % out["natmod_call_floor_ns"])
    print("targets (natmod / pure MicroPython): framing >= 50x (mix): %.1fx (1 KiB frames: %.1fx), VM >= 30x "
          "(20 rules): %.1fx" % (out["framing_speedup"], out["framing_speedup_1024"], out["vm_speedup_20"]))
    return 0


if __name__ == "__main__":
    if IS_MPY:
        _worker(sys.argv[1:])
    else:
        sys.exit(main(sys.argv[1:]))
