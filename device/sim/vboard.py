# Virtual board process entry:
#   micropython vboard.py --dir BOARD_DIR [--board-json FILE] [--mac aa:bb:..] [--air host:port]
#                         [--scenario FILE] [--name NAME] [--entry MODULE[:FUNC]] [--no-chips]
# Sets up the board (flash/NVS/RTC state in BOARD_DIR, MAC, reset cause, OTA boot slot), attaches fake
# chips for the sensors in the board config (values from the scenario), then runs the entry point:
# --entry MODULE[:FUNC] (import MODULE, call FUNC() if given), else /boot.py + /main.py of the board's own
# filesystem, else fieldlink.main.run(). Before that, simboot mounts the board's `vfs` partition
# (BOARD_DIR/flash/vfs.bin, LittleFS2) at "/" like the ESP32 port's _boot.py: the host's files are out of
# reach. The process exit code tells the launcher what happened (simboard.EXIT_*).
import sys

import simboard

USAGE = ("usage: vboard.py --dir BOARD_DIR [--board-json FILE] [--mac MAC] [--air HOST:PORT] "
         "[--scenario FILE] [--name NAME] [--entry MODULE[:FUNC]] [--no-chips]")


def parse_args(argv):
    opts = {"dir": None, "board_json": None, "mac": None, "air": None, "scenario": None, "name": None,
            "entry": None, "chips": True}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            print(USAGE)
            sys.exit(0)
        if a == "--no-chips":
            opts["chips"] = False
            i += 1
            continue
        key = a[2:].replace("-", "_") if a.startswith("--") else None
        if key not in opts or i + 1 >= len(argv):
            raise ValueError("bad argument %r" % a)
        opts[key] = argv[i + 1]
        i += 2
    if not opts["dir"]:
        raise ValueError("--dir is required")
    return opts


def setup(opts):
    import simfs
    d = simfs.habspath(opts["dir"].rstrip("/") or "/")
    config = None
    if opts["board_json"]:
        config = simboard.read_json(opts["board_json"], None)
        if config is None:
            raise ValueError("cannot read board JSON %s" % opts["board_json"])
    b = simboard.setup(dir=d, mac=opts["mac"], config=config, air=opts["air"])
    import esp32
    name = opts["name"] or b.config.get("name") or "vboard"
    print("vboard: %s mac=%s reset_cause=%d boot=%s air=%s" % (
        name, b.state["mac"], b.reset_cause, esp32._ota(b).get("running"), b.air))
    scen = None
    if opts["scenario"]:
        import scenario
        scen = scenario.load(opts["scenario"])
        scenario.set_clock(scen.speed)
    if opts["chips"]:
        import scenario
        scenario.attach_board_sensors(b.config, scen, name, b.state["mac"])
    return b, d


def _code_dirs(d):
    """Host directories on MICROPYPATH that hold importable code other than the sim's own modules
    (the device package, --entry modules): mounted read-only on the board (simboot.mount_code)."""
    import simfs
    sim_dir = simboard.__file__.rsplit("/", 1)[0] if "/" in simboard.__file__ else "."
    sim_dir = simfs.habspath(sim_dir)
    out = []
    for p in sys.path:
        if not p or p == ".frozen" or p == d:
            continue
        p = simfs.habspath(p)
        if p != sim_dir and p not in out and simfs.hexists(p):
            out.append(p)
    return out


def boot(b, d, main=None):
    """Mount the board's own filesystem at "/" (simboot) and provision /board.json from the launcher's
    BOARD_DIR/board.json when that changed (what `fieldlink deploy` does on hardware)."""
    import simboot
    import simfs
    files = {}
    host_cfg = d + "/board.json"
    if simfs.hexists(host_cfg):
        with simfs.hopen(host_cfg, "rb") as f:
            data = f.read()
        if b.state.get("provisioned") != simboard._fnv(data):
            files["board.json"] = data
            b.state["provisioned"] = simboard._fnv(data)
            b.save_state()
    # the owner public keys a board built with `--owner-key` carries (docs/ota.md "Trust store"): written
    # once, like a first deploy; the device trusts them on its first boot and never from here again
    host_keys = d + "/owner_keys.json"
    if simfs.hexists(host_keys) and not b.state.get("owner_keys"):
        with simfs.hopen(host_keys, "rb") as f:
            files["owner_keys.json"] = f.read()
        b.state["owner_keys"] = True
        b.save_state()
    if not simboard.IS_MPY:
        return _boot_cpython(d, files)
    return simboot.boot(b, code=_code_dirs(d), uplink=simboard.simfs.getenv("FIELDLINK_UPLINK"),
                        main=main, files=files)


def _boot_cpython(d, files):
    """CPython runs a board only for the benches' side-by-side rows: it cannot mount LittleFS, so the
    board's files live in the host directory BOARD_DIR/cpython-fs, which becomes the working directory
    (device code uses relative paths on the unix port). Not a sandbox (docs/virtual-board.md)."""
    import os
    fs = d + "/cpython-fs"
    os.makedirs(fs, exist_ok=True)
    os.chdir(fs)
    for name, data in files.items():
        with open(name, "wb") as f:
            f.write(data)
    if "" not in sys.path:
        sys.path.insert(0, "")
    return None


def _run_file(name, g):
    try:
        with open(name) as f:
            src = f.read()
    except OSError:
        return False
    exec(compile(src, name, "exec"), g)
    return True


def run_entry(opts, d, g=None):
    """--entry MODULE[:FUNC], else /main.py on the board's filesystem (after /boot.py, in the globals
    `g` like the firmware runs them in __main__), else fieldlink.main.run()."""
    if g is None:
        g = {"__name__": "__main__"}
    entry = opts["entry"]
    if entry:
        mod, _, func = entry.partition(":")
        m = __import__(mod)
        for part in mod.split(".")[1:]:
            m = getattr(m, part)
        if func:
            return getattr(m, func)()
        return None
    _run_file("boot.py", g)
    if _run_file("main.py", g):
        return None
    import fieldlink.main
    return fieldlink.main.run()


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    try:
        opts = parse_args(argv)
        b, d = setup(opts)
        boot(b, d, main=globals())
    except (ValueError, OSError) as e:
        print("vboard: error:", e)
        print(USAGE)
        sys.exit(2)
    run_entry(opts, d, globals())


if __name__ == "__main__":
    main()
