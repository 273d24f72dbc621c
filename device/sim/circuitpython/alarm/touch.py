# alarm.touch.TouchAlarm: accepted by the sleep functions (the virtual board does not wake on touch).


class TouchAlarm:
    def __init__(self, *pin):
        if len(pin) != 1:
            raise ValueError("one pin")
        self.pin = pin[0]
