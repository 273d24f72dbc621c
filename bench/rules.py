"""Rule VM throughput: ticks per second for 1, 20 and 100 rules, CPython and MicroPython side by side.

    python bench/rules.py [--ticks N]

Each program mixes hysteresis thresholds, 10-sample averages, time-window maxima, absence checks and
relay/event actions over the sim-node board; every tick feeds fresh readings for all sensors.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "device"), str(ROOT / "host")]

from _bench import run_micropython  # noqa: E402
from fieldlink_host.rules.compiler import compile_text  # noqa: E402

INPUTS = ["sht.temperature", "sht.relative_humidity", "light.lux", "air.co2"]

TICK_LOOP = """
import time
from fieldlink.rules.verify import verify
from fieldlink.rules.vm import VM
def bench(blob, ticks):
    vm = VM(verify(blob))
    n_in = len(vm.kinds)
    t0 = time.ticks_us() if hasattr(time, "ticks_us") else time.perf_counter_ns() // 1000
    t = 0
    for k in range(ticks):
        for i in range(n_in):
            if vm.kinds[i] == 1:
                vm.set_input(i, 20000 + ((k * 7 + i * 13) % 200) * 100, t)
        vm.run(t, 3600000, t)
        t += 1000
    t1 = time.ticks_us() if hasattr(time, "ticks_us") else time.perf_counter_ns() // 1000
    return ticks * 1000000 / max(1, t1 - t0)
"""


def program(n: int) -> bytes:
    rules = []
    for i in range(n):
        inp = INPUTS[i % 4]
        kind = i % 4
        if kind == 0:
            cond = f"{inp} > {20 + i % 10} hyst 1"
        elif kind == 1:
            cond = f"avg({inp}, 10) > {25 + i % 5}"
        elif kind == 2:
            cond = f"max({inp}, 30s) > {30 + i % 7} and not relay.fan"
        else:
            cond = f"absent({inp}, 60s) or {inp} < {15 + i % 3}"
        ev = f"e{i % 8}"
        if i % 10 == 0:
            acts = f"    then: [{{on: fan}}, {{event: {ev}}}]\n    else: [{{off: fan}}]\n"
        else:
            acts = f"    then: [{{event: {ev}, severity: warning}}]\n"
        rules.append(f"  - name: r{i}\n    when: \"{cond}\"\n    priority: {i}\n" + acts)
    return compile_text("board: sim-node\nrules:\n" + "".join(rules)).program


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ticks", type=int, default=20000, help="ticks for 1 rule (scaled down for more rules)")
    args = ap.parse_args()
    ns: dict[str, object] = {}
    exec(TICK_LOOP, ns)
    bench = ns["bench"]
    print(f"{'rules':>5} {'bytes':>6} {'CPython ticks/s':>16} {'MicroPython ticks/s':>20} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as d:
        for n in (1, 20, 100):
            blob = program(n)
            ticks = max(100, args.ticks // n)
            cpy = bench(blob, ticks)  # type: ignore[operator]
            p = Path(d) / f"p{n}.bin"
            p.write_bytes(blob)
            script = Path(d) / "b.py"
            script.write_text(TICK_LOOP + f"\nprint(bench(open({str(p)!r}, 'rb').read(), {ticks}))\n")
            res = run_micropython(script)
            mpy = float(res.stdout.strip()) if res.returncode == 0 else float("nan")
            print(f"{n:>5} {len(blob):>6} {cpy:>16.0f} {mpy:>20.0f} {cpy / mpy:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
