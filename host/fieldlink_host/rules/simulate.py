"""`fieldlink rules simulate`: replay a CSV of readings through the device VM (fieldlink_sim.rules_replay,
the same code the node runs) and produce the action log, optionally as an HTML page."""

from __future__ import annotations

import html
from pathlib import Path

from fieldlink.rules import opcodes as O
from fieldlink.rules.verify import VerifyError
from fieldlink_sim.rules_replay import ReplayError, parse_tod, replay

from fieldlink_host.errors import FieldlinkError
from fieldlink_host.fsio import read_text


def simulate_lines(program: bytes, lines: list[str], start_tod: str | None = None) -> list[str]:
    """Run `program` over CSV `lines`; return the action log lines (each ending in newline)."""
    out: list[str] = []
    try:
        tod = parse_tod(start_tod) if start_tod else None
    except ValueError as exc:
        raise FieldlinkError(f"--start: {exc}") from None
    try:
        replay(program, lines, out.append, tod)
    except VerifyError as exc:
        raise FieldlinkError(f"program rejected by the verifier: {exc}") from None
    except ReplayError as exc:
        raise FieldlinkError(str(exc)) from None
    return out


def simulate_csv(program: bytes, csv_path: str | Path, start_tod: str | None = None) -> list[str]:
    p = Path(csv_path)
    lines = read_text(p, "CSV").splitlines()
    try:
        return simulate_lines(program, lines, start_tod)
    except FieldlinkError as exc:
        raise FieldlinkError(exc.message, where=str(p)) from None


def html_report(title: str, csv_lines: list[str], log: list[str]) -> str:
    """A self-contained page: one SVG chart per numeric CSV column with action markers, and the log."""
    rows = [ln.split(",") for ln in csv_lines if ln.strip() and not ln.startswith("#")]
    header, data = rows[0], rows[1:]
    ms = header[0] == "time_ms"
    times = [int(r[0]) if ms else int(O.parse_fixed(r[0])) for r in data]
    acts = [(int(line.split(" ", 1)[0]), line.strip()) for line in log]
    t0, t1 = (times[0], times[-1]) if times else (0, 1)
    span = max(1, t1 - t0)
    parts = [f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif}svg{background:#fafafa;border:1px solid #ccc}"
             ".a{stroke:#c00;stroke-dasharray:3}</style>", f"<h1>{html.escape(title)}</h1>"]
    for c in range(1, len(header)):
        pts = []
        for t, r in zip(times, data, strict=False):
            if c < len(r) and r[c].strip():
                try:
                    pts.append((t, O.parse_fixed(r[c]) / O.SCALE))
                except ValueError:
                    continue
        if not pts:
            continue
        lo, hi = min(v for _, v in pts), max(v for _, v in pts)
        rng = (hi - lo) or 1.0
        poly = " ".join(f"{(t - t0) * 800 / span:.1f},{190 - (v - lo) * 180 / rng:.1f}" for t, v in pts)
        marks = "".join(f'<line class=a x1="{(t - t0) * 800 / span:.1f}" y1=0 x2="{(t - t0) * 800 / span:.1f}" '
                        f'y2=200><title>{html.escape(s)}</title></line>' for t, s in acts)
        parts.append(f"<h2>{html.escape(header[c])} ({lo:g} .. {hi:g})</h2><svg width=800 height=200>"
                     f'<polyline fill=none stroke="#06c" points="{poly}"/>{marks}</svg>')
    parts.append("<h2>Actions</h2><pre>" + html.escape("".join(log)) + "</pre>")
    return "\n".join(parts) + "\n"
