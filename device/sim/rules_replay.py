# Replays a CSV of timestamped readings through the VM and writes the action log. Runs unchanged on
# CPython (`fieldlink rules simulate`) and MicroPython, and gives byte-identical logs on both: CSV
# numbers are parsed straight to fixed point (no floats), times are integers.
#
# CSV: a header line, then one row per tick. The first column is the time: `time_ms` (integer ms) or
# `time_s` / `t` (seconds, decimals allowed). An optional `time_of_day` column ("HH:MM" or "HH:MM:SS")
# sets the clock. Every other column names an input ("sht.temperature", "remote.x", "flag.x",
# "relay.x"); an empty cell means no reading in that tick. Unknown columns are ignored.
# Log line per action: "<time_ms> <rule> <kind> <target> <arg>\n", e.g.
#   "12000 fan_hot relay fan on", "15000 water pulse pump 3000", "20000 alarm event too_hot warning",
#   "30000 slow interval - 60000", "40000 night sleep - 600000".
from fieldlink.rules import opcodes as O
from fieldlink.rules.verify import verify
from fieldlink.rules.vm import VM


class ReplayError(ValueError):
    pass


def parse_tod(s):
    """ "HH:MM" or "HH:MM:SS" -> ms since midnight."""
    parts = s.strip().split(":")
    if len(parts) not in (2, 3):
        raise ValueError("bad time of day %r" % s)
    h, m = int(parts[0]), int(parts[1])
    sec = int(parts[2]) if len(parts) == 3 else 0
    if not (0 <= h < 24 and 0 <= m < 60 and 0 <= sec < 60):
        raise ValueError("bad time of day %r" % s)
    return ((h * 60 + m) * 60 + sec) * 1000


def _time_ms(cell, unit_ms):
    if unit_ms == 1:
        return int(cell)
    return O.parse_fixed(cell)  # seconds with 3 decimals == ms


def format_action(prog, t, kind, a, arg, r):
    rule = prog.rule_names[r]
    if kind == O.ACT_RELAY:
        return "%d %s relay %s %s\n" % (t, rule, prog.input_names[a][6:], "on" if arg else "off")
    if kind == O.ACT_PULSE:
        return "%d %s pulse %s %d\n" % (t, rule, prog.input_names[a][6:], arg)
    if kind == O.ACT_EVENT:
        return "%d %s event %s %s\n" % (t, rule, prog.strings[a], O.SEVERITIES[arg])
    if kind == O.ACT_INTERVAL:
        return "%d %s interval - %d\n" % (t, rule, arg)
    return "%d %s sleep - %d\n" % (t, rule, arg)


def replay(blob, lines, write, start_tod_ms=None):
    """Run program `blob` over CSV `lines` (iterable of str); call write(line) per action.
    Returns the number of ticks. Raises VerifyError for a bad program, ReplayError for a bad CSV."""
    prog = verify(blob)
    vm = VM(prog)
    it = iter(lines)
    header = None
    lineno = 0
    for line in it:
        lineno += 1
        line = line.strip()
        if line and not line.startswith("#"):
            header = [c.strip() for c in line.split(",")]
            break
    if header is None:
        raise ReplayError("CSV has no header line")
    tcol = header[0]
    if tcol == "time_ms":
        unit = 1
    elif tcol in ("time_s", "t"):
        unit = 1000
    else:
        raise ReplayError("line %d: first column must be time_ms, time_s or t, not %r" % (lineno, tcol))
    slots = []
    tod_col = -1
    for c in range(1, len(header)):
        name = header[c]
        if name == "time_of_day":
            tod_col = c
            slots.append(-1)
            continue
        i = -1
        for j in range(len(prog.input_names)):
            if prog.input_names[j] == name:
                i = j
        slots.append(i)
    ticks = 0
    t0 = None
    last_t = None
    for line in it:
        lineno += 1
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cells = line.split(",")
        if len(cells) > len(header):
            raise ReplayError("line %d: %d cells, header has %d" % (lineno, len(cells), len(header)))
        try:
            t = _time_ms(cells[0], unit)
        except ValueError:
            raise ReplayError("line %d: bad time %r" % (lineno, cells[0]))
        if last_t is not None and t < last_t:
            raise ReplayError("line %d: time goes backwards" % lineno)
        last_t = t
        if t0 is None:
            t0 = t
        tod = O.NONE
        if start_tod_ms is not None:
            tod = (start_tod_ms + t - t0) % O.DAY_MS
        for c in range(1, len(cells)):
            cell = cells[c].strip()
            if not cell:
                continue
            if c == tod_col:
                try:
                    tod = parse_tod(cell)
                except ValueError:
                    raise ReplayError("line %d: bad time_of_day %r" % (lineno, cell))
                continue
            i = slots[c - 1]
            if i < 0:
                continue
            k = prog.input_kind[i]
            try:
                v = O.parse_fixed(cell)
            except ValueError:
                raise ReplayError("line %d: bad number %r in column %s" % (lineno, cell, header[c]))
            if k == O.IN_RELAY or k == O.IN_FLAG:
                v = 1 if v else 0
            vm.set_input(i, v, t)
        n = vm.run(t, tod, O.saturate(t - t0))
        out = vm.out
        for j in range(n):
            write(format_action(prog, t, out[4 * j], out[4 * j + 1], out[4 * j + 2], out[4 * j + 3]))
        ticks += 1
    return ticks
