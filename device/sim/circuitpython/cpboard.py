# CircuitPython virtual board process (the CircuitPython counterpart of device/sim/vboard.py):
#   micropython cpboard.py --dir DRIVE [--mac MAC] [--air HOST:PORT] [--scenario FILE] [--name NAME]
# with device/sim/circuitpython first on MICROPYPATH, then device/sim. DRIVE is the board's CIRCUITPY
# drive and its state directory: board.json (the board config, for the fakes and the chips), flash and
# NVM state, and what `fieldlink deploy --drive DRIVE` put there. Like CircuitPython it writes
# boot_out.txt, then runs code.py (else main.py) from the drive, in the drive's directory; no fieldlink
# package on the path other than the drive's own lib/ directories.
import sys

import simboard
import vboard


def main(argv=None):
    try:
        opts = vboard.parse_args(sys.argv[1:] if argv is None else argv)
        d = opts["dir"].rstrip("/") or "/"
        b = simboard.setup(dir=d, mac=opts["mac"], air=opts["air"])  # boots without esp32: no OTA slots
        name = opts["name"] or b.config.get("name") or "cpboard"
        print("cpboard: %s mac=%s reset_cause=%d air=%s" % (name, b.state["mac"], b.reset_cause, b.air))
        import scenario
        scen = None
        if opts["scenario"]:
            scen = scenario.load(opts["scenario"])
            scenario.set_clock(scen.speed)
        if opts["chips"]:
            scenario.attach_board_sensors(b.config, scen, name, b.state["mac"])
    except (ValueError, OSError, KeyError) as e:
        print("cpboard: error:", e)
        sys.exit(2)
    import os
    os.chdir(d)
    cfg = b.config.get("circuitpython") or {}
    with open("boot_out.txt", "w") as f:
        f.write("Adafruit CircuitPython %s.0.0 (fieldlink virtual board); %s with ESP32S3\nBoard ID:%s\n" % (
            cfg.get("version", 9), b.config.get("name", "virtual"), cfg.get("board_id", "fieldlink_virtual")))
    for name in ("code.py", "main.py"):
        if simboard._exists(name):
            print("cpboard: running %s" % name)
            with open(name) as f:
                src = f.read()
            exec(compile(src, name, "exec"), {"__name__": "__main__"})
            return
    print("cpboard: no code.py on the drive")


main()
