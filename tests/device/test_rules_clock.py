# Schedules need local time of day: fieldlink.node.start.attach_clock feeds the rules engine from the node's
# epoch clock (set by time_sync) plus options.tz_offset_min; unknown time -> None (schedules off).
from fieldlink.node import start as node_start


class FakeEngine:
    def __init__(self):
        self.tod_source = None


class FakeNode:
    def __init__(self, epoch):
        self.epoch = epoch

    def epoch_ms(self):
        return self.epoch


def test_time_of_day_from_epoch_and_timezone():
    eng, node = FakeEngine(), FakeNode(None)
    node_start.attach_clock(eng, node, {"options": {"tz_offset_min": 60}})
    assert eng.tod_source() is None  # no time_sync yet
    # 2023-11-14 22:13:20 UTC = 1700000000 s; +60 min -> 23:13:20 local = 83600 s after midnight
    node.epoch = 1700000000000
    assert eng.tod_source() == 83600000
    # crossing midnight: 23:30 UTC + 60 min = 00:30 local
    node.epoch = 1699920000000 + 23 * 3600000 + 30 * 60000  # 1699920000 = 1700000000 - 80000 = 00:00 UTC
    assert eng.tod_source() == 30 * 60000


def test_without_timezone_and_existing_source_kept():
    eng, node = FakeEngine(), FakeNode(1700000000000)
    node_start.attach_clock(eng, node, {})
    assert eng.tod_source() == 80000000  # 22:13:20 UTC
    own = FakeEngine()
    own.tod_source = lambda: 5
    node_start.attach_clock(own, node, {})
    assert own.tod_source() == 5
    node_start.attach_clock(None, node, {})  # no engine: nothing to do, no error
