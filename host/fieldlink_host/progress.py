"""A tiny progress bar for long host operations (build, deploy, image, flash).

Draws on stderr only when stderr is a terminal (or when forced), so piped and test output stays clean.
"""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType
from typing import TextIO


class Progress:
    """``with Progress("deploy", total) as p: p.advance(n, label)``; a no-op when not on a terminal."""

    def __init__(self, title: str, total: int, *, unit: str = "", stream: TextIO | None = None,
                 enabled: bool | None = None, width: int = 28) -> None:
        self.title = title
        self.total = max(int(total), 0)
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = self.stream.isatty() and os.environ.get("FIELDLINK_NO_PROGRESS") is None
        self.enabled = enabled
        self.width = width
        self.done = 0
        self.label = ""
        self._last_draw = 0.0

    def __enter__(self) -> Progress:
        self._draw(force=True)
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def update(self, done: int, label: str = "") -> None:
        """Set the absolute amount done (clamped to the total)."""
        self.done = min(max(done, 0), self.total) if self.total else done
        if label:
            self.label = label
        self._draw()

    def advance(self, n: int = 1, label: str = "") -> None:
        self.update(self.done + n, label)

    def render(self) -> str:
        """The current bar as a single line (also used by tests)."""
        if self.total:
            frac = self.done / self.total
            filled = int(round(frac * self.width))
            bar = "#" * filled + "-" * (self.width - filled)
            count = f"{self.done}/{self.total}{(' ' + self.unit) if self.unit else ''}"
            line = f"{self.title} [{bar}] {frac * 100:3.0f}% {count}"
        else:
            line = f"{self.title} {self.done}{(' ' + self.unit) if self.unit else ''}"
        if self.label:
            line += f" {self.label}"
        return line[:120]

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.05 and self.done < self.total:
            return
        self._last_draw = now
        self.stream.write("\r\x1b[K" + self.render())
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self.enabled = False
