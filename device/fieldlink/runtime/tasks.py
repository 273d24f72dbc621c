# Task supervisor, logging and clock helpers shared by the node and gateway roles.
#
#   ticks_ms/ticks_diff/ticks_add  re-exported from fieldlink.runtime.clock (sleeps: clock.asleep_ms).
#   Log        tiny leveled logger with a replaceable sink (the gateway routes it over the uplink,
#              because on hardware its stdout IS the uplink); keeps the last few errors.
#   Supervisor runs named asyncio tasks; a task that raises is logged, counted and restarted after an
#              exponential backoff (base_ms * 2**(n-1), capped at max_ms; n resets after the task has
#              run healthy for healthy_ms). A task that returns normally is not restarted.
#              Crashes never propagate: the role keeps running.
import sys

import asyncio


from fieldlink.runtime.clock import asleep_ms, ticks_add, ticks_diff, ticks_ms  # noqa: F401 (re-exported)


def exc_text(e):
    """'TypeName: message' for an exception, on both runtimes."""
    msg = str(e)
    return type(e).__name__ + (": " + msg if msg else "")


def print_exc(e, file=None):
    f = file or sys.stderr
    if hasattr(sys, "print_exception"):
        sys.print_exception(e, f)
    else:
        import traceback
        traceback.print_exception(type(e), e, e.__traceback__, file=f)


LEVELS = ("debug", "info", "warn", "error")


class Log:
    def __init__(self, name="fl", sink=None, level=1, keep=8):
        self.name = name
        self.sink = sink  # callable(level_str, text) or None -> stderr
        self.level = level
        self.recent = []  # last `keep` warnings/errors as (level, text)
        self.keep = keep
        self.counts = [0, 0, 0, 0]

    def _emit(self, lvl, text):
        self.counts[lvl] += 1
        if lvl >= 2:
            self.recent.append((LEVELS[lvl], text))
            if len(self.recent) > self.keep:
                self.recent.pop(0)
        if lvl < self.level:
            return
        if self.sink is not None:
            try:
                self.sink(LEVELS[lvl], text)
                return
            except Exception:  # a broken sink must not take the role down
                pass
        try:
            sys.stderr.write("[%s] %s: %s\n" % (self.name, LEVELS[lvl], text))
        except Exception:
            pass

    def debug(self, text):
        self._emit(0, text)

    def info(self, text):
        self._emit(1, text)

    def warn(self, text):
        self._emit(2, text)

    def error(self, text):
        self._emit(3, text)


class _Entry:
    def __init__(self, name, factory):
        self.name = name
        self.factory = factory
        self.task = None
        self.crashes = 0  # total
        self.streak = 0  # consecutive, for backoff
        self.last_error = None
        self.done = False
        self.started = 0


class Supervisor:
    def __init__(self, log=None, base_ms=100, max_ms=30000, healthy_ms=10000, on_crash=None):
        self.log = log or Log("sup")
        self.base_ms = base_ms
        self.max_ms = max_ms
        self.healthy_ms = healthy_ms
        self.on_crash = on_crash  # callable(name, exc) or None
        self.entries = {}
        self.crashes = 0

    def backoff_ms(self, streak):
        if streak <= 0:
            return 0
        d = self.base_ms
        for _ in range(streak - 1):
            d *= 2
            if d >= self.max_ms:
                return self.max_ms
        return min(d, self.max_ms)

    def spawn(self, name, factory):
        """Start factory() (a function returning a coroutine) under supervision as task `name`."""
        if name in self.entries and not self.entries[name].done:
            raise ValueError("task already running: " + name)
        e = _Entry(name, factory)
        self.entries[name] = e
        e.task = asyncio.create_task(self._run(e))
        return e.task

    async def _run(self, e):
        while True:
            e.started = ticks_ms()
            try:
                await e.factory()
                e.done = True
                return
            except asyncio.CancelledError:
                e.done = True
                raise
            except Exception as exc:
                if ticks_diff(ticks_ms(), e.started) >= self.healthy_ms:
                    e.streak = 0
                e.crashes += 1
                e.streak += 1
                self.crashes += 1
                e.last_error = exc_text(exc)
                delay = self.backoff_ms(e.streak)
                self.log.error("task %s crashed (%d): %s; restart in %d ms" % (e.name, e.crashes, e.last_error, delay))
                if self.on_crash is not None:
                    try:
                        self.on_crash(e.name, exc)
                    except Exception:
                        pass
                await asleep_ms(delay)

    def running(self, name):
        e = self.entries.get(name)
        return e is not None and not e.done

    def stats(self):
        out = {}
        for name, e in self.entries.items():
            out[name] = {"crashes": e.crashes, "err": e.last_error, "done": e.done}
        return out

    def cancel_all(self):
        for e in self.entries.values():
            if e.task is not None and not e.done:
                e.task.cancel()
                e.done = True
