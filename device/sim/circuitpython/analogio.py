# CircuitPython `analogio` for the virtual board: AnalogIn on the voltage sources of simboard.attach_adc().
# The Espressif port reads calibrated millivolts at 11 dB attenuation and scales them to 16 bits against
# a 3.3 V reference: value = mV * 65535 / 3300 (reference_voltage = 3.3). The ESP32-S3/C6 ADC saturates
# near 3.1 V at 11 dB, so the top of the range is never reached.
import microcontroller
import simboard

_ADC_PINS = {"esp32s3": range(1, 21), "esp32c6": range(0, 7)}
_FULL_SCALE_V = 3.1
_REFERENCE_V = 3.3


class AnalogIn(microcontroller._Peripheral):
    def __init__(self, pin):
        allowed = _ADC_PINS.get(simboard.board().chip)
        if allowed is not None and pin.number not in allowed:
            raise ValueError("Invalid pin")
        self._claim(pin)
        self._pin = pin

    @property
    def value(self):
        self._check()
        src = simboard.board().adc.get(self._pin.number)
        v = 0.0 if src is None else float(src())
        v = min(max(v, 0.0), _FULL_SCALE_V)
        mv = int(v * 1000)  # the calibration API returns whole millivolts
        return min(65535, mv * 65535 // 3300)

    @property
    def reference_voltage(self):
        self._check()
        return _REFERENCE_V
