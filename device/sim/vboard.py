# Virtual board process entry:
#   micropython vboard.py --dir BOARD_DIR [--board-json FILE] [--mac aa:bb:..] [--air host:port]
#                         [--scenario FILE] [--name NAME] [--entry MODULE[:FUNC]] [--no-chips]
# Sets up the board (flash/NVS/RTC state in BOARD_DIR, MAC, reset cause, OTA boot slot), attaches fake
# chips for the sensors in the board config (values from the scenario), then runs the entry point:
# --entry MODULE[:FUNC] (import MODULE, call FUNC() if given), else BOARD_DIR/main.py if present, else
# fieldlink.main.run(). The process exit code tells the launcher what happened (simboard.EXIT_*).
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


def _exists(p):
    return simboard._exists(p)


def setup(opts):
    d = opts["dir"].rstrip("/") or "/"
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


def _setenv(name, value):
    import os
    if os.getenv(name):
        return
    if hasattr(os, "environ"):
        os.environ[name] = value
    else:
        os.putenv(name, value)


def run_entry(opts, d):
    sys.path.insert(0, d)
    if _exists(d + "/board.json"):  # fieldlink.main finds the board config through $FIELDLINK_BOARD
        _setenv("FIELDLINK_BOARD", d + "/board.json")
    try:
        import os
        os.chdir(d)
    except (OSError, AttributeError):
        pass
    entry = opts["entry"]
    if entry:
        mod, _, func = entry.partition(":")
        m = __import__(mod)
        for part in mod.split(".")[1:]:
            m = getattr(m, part)
        if func:
            return getattr(m, func)()
        return None
    if _exists(d + "/main.py"):
        __import__("main")
        return None
    import fieldlink.main
    return fieldlink.main.run()


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    try:
        opts = parse_args(argv)
        _b, d = setup(opts)
    except (ValueError, OSError) as e:
        print("vboard: error:", e)
        print(USAGE)
        sys.exit(2)
    run_entry(opts, d)


if __name__ == "__main__":
    main()
