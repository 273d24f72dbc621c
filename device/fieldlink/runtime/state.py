# The small persistent state a board keeps across reboots and deep sleep.
#
#   State(path, rtc=None)           boot id, sequence, counters: RTC memory first (survives deep sleep),
#                                   then a file (survives power loss); boot id increments on every
#                                   boot that is not a deep-sleep wake.
import json

from fieldlink.runtime import store


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


class State:
    """Boot id, message sequence and counters kept in RTC memory (deep sleep) and a small file."""

    MAGIC = "fl1"

    def __init__(self, path=None, rtc=None, deep_wake=False):
        self.path = path
        self.rtc = rtc
        self.boot = 0
        self.seq = 0        # telemetry sequence q of this boot (1, 2, 3 ...; the host checks none skipped)
        self.eseq = 0       # event sequence e of this boot, its own so telemetry q stays gapless
        self.counters = {}
        self.extra = {}
        self.woke = False
        data = None
        if deep_wake and rtc is not None:
            data = self._from_rtc()
        if data is not None:
            self.woke = True
            self._apply(data)
        else:
            fdata = self._from_file()
            if fdata is not None:
                self._apply(fdata)
            self.boot += 1
            self.seq = 0
            self.eseq = 0
            self.save_file()

    def _apply(self, d):
        if _is_int(d.get("boot")):
            self.boot = d["boot"]
        if _is_int(d.get("seq")):
            self.seq = d["seq"]
        if _is_int(d.get("e")):
            self.eseq = d["e"]
        if isinstance(d.get("c"), dict):
            self.counters = d["c"]
        if isinstance(d.get("x"), dict):
            self.extra = d["x"]

    def _dump(self):
        return json.dumps({"m": self.MAGIC, "boot": self.boot, "seq": self.seq, "e": self.eseq, "c": self.counters,
                           "x": self.extra})

    def _from_rtc(self):
        try:
            raw = self.rtc.memory()
            if not raw:
                return None
            d = json.loads(bytes(raw).decode())
            return d if isinstance(d, dict) and d.get("m") == self.MAGIC else None
        except Exception:
            return None

    def _from_file(self):
        if not self.path:
            return None
        d = store.read_json(self.path, "board state")
        if d is None:
            return None
        if isinstance(d, dict) and d.get("m") == self.MAGIC:
            return d
        store.warn("board state %s has an unknown format; starting from boot 0" % self.path)
        return None

    def next_seq(self):
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        return self.seq

    def next_event(self):
        self.eseq = (self.eseq + 1) & 0xFFFFFFFF
        return self.eseq

    def save_rtc(self):
        if self.rtc is None:
            return False
        try:
            self.rtc.memory(self._dump().encode())
            return True
        except Exception:
            return False

    def save_file(self):
        if not self.path:
            return False
        try:
            store.write(self.path, self._dump())
            return True
        except OSError:
            return False
