# What the gateway and the node roles share (both subclass RoleBase): the clock and uptime, the epoch
# clock set by time sync, the watchdog task, the task supervisor and the run/stop loop. A role calls
# RoleBase.__init__ first, spawns its own tasks in start() (after spawn_base()), and stops with stop_base().
from fieldlink.runtime.clock import asleep_ms, ticks_diff
from fieldlink.runtime.tasks import Supervisor

WDT_FEED_MS = 500


class RoleBase:
    def __init__(self, link, clock, log, wdt):
        self.link = link
        self.clock = clock
        self.log = log
        self.wdt = wdt  # machine.WDT or None; fed by the "wdt" task while the loop is alive
        self.started = clock()
        self.epoch_base = None  # epoch ms at tick `epoch_tick` (set by time sync)
        self.epoch_tick = 0
        self.sup = Supervisor(log)
        self._running = False

    def uptime_s(self):
        return ticks_diff(self.clock(), self.started) // 1000

    def epoch_ms(self):
        if self.epoch_base is None:
            return None
        return self.epoch_base + ticks_diff(self.clock(), self.epoch_tick)

    def set_epoch(self, epoch_ms):
        self.epoch_base = epoch_ms
        self.epoch_tick = self.clock()

    async def _watchdog_task(self):
        while self._running:
            if self.wdt is not None:
                self.wdt.feed()
            await asleep_ms(WDT_FEED_MS)

    def spawn_base(self):
        """Mark the role running and start the tasks every role has: watchdog, link loop."""
        self._running = True
        self.sup.spawn("wdt", self._watchdog_task)
        self.sup.spawn("link", self.link.run)

    def stop_link(self):
        """Mark the role stopped and stop its link loop."""
        self._running = False
        try:
            self.link.stop()
        except Exception:
            pass

    def stop_base(self):
        self.stop_link()
        self.sup.cancel_all()

    async def idle(self):
        """The role's own loop once its tasks run: sleeps until stop()."""
        while self._running:
            await asleep_ms(1000)
