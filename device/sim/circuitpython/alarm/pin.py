# alarm.pin.PinAlarm: accepted by the sleep functions (the virtual board does not wake on pins).


class PinAlarm:
    def __init__(self, pin, value, edge=False, pull=False):
        self.pin = pin
        self.value = bool(value)
        self.edge = bool(edge)
        self.pull = bool(pull)
