# Winsen/Hanwei MQ-135 air quality (gas) sensor on an ADC pin.
# Circuit (datasheet "MQ-135 Gas Sensor" fig. 2): heater and sensing element at Vc (5 V), load resistor
# RL from the sensing element to GND; Vout across RL. Usually Vout goes through a divider to the 3.3 V
# ADC: v_adc = Vout * divider. Then Rs = RL * (Vc - Vout) / Vout.
# Concentration from the datasheet's sensitivity curve (log-log straight line) for CO2:
#     ppm = a * (Rs / R0) ** b
# with the power-law fit a = 116.6020682, b = -2.769034857 (the widely used fit of the datasheet CO2
# curve, G. Krocker's MQ135 library) and R0 = Rs in clean air at the atmospheric CO2 level.
# calibrate(ppm) computes R0 from the current Rs: R0 = Rs / (ppm / a) ** (1 / b).
# Warm-up: the heater needs time; readings during warmup_ms after construction are NotReady
# (datasheet: preheat over 24 h before calibration; minutes are enough for relative readings).
from fieldlink.runtime.clock import ticks_diff as _diff, ticks_ms as _ms

from fieldlink.drivers.base import InvalidReading, NotReady
from fieldlink.drivers.analog_lux import read_volts

PARA_A = 116.6020682
PARA_B = -2.769034857
ATMOSPHERIC_CO2 = 400.0


class MQ135:
    QUANTITIES = ("co2",)

    def __init__(self, adc, r0=76630.0, rl=10000.0, vc=5.0, divider=1.0, a=PARA_A, b=PARA_B,
                 warmup_ms=180000, clock=None, vref=3.3):
        self.adc = adc
        self.r0 = r0
        self.rl = rl
        self.vc = vc
        self.divider = divider
        self.a = a
        self.b = b
        self.vref = vref
        self.warmup_ms = warmup_ms
        self.clock = clock or _ms
        self.t0 = self.clock()

    @property
    def warm(self):
        return _diff(self.clock(), self.t0) >= self.warmup_ms

    def resistance_from_volts(self, v_adc):
        vout = v_adc / self.divider
        if vout <= 0.0 or vout >= self.vc:
            raise InvalidReading("mq135 output out of range")
        return self.rl * (self.vc - vout) / vout

    def ppm_from_resistance(self, rs):
        return self.a * (rs / self.r0) ** self.b

    @property
    def resistance(self):
        return self.resistance_from_volts(read_volts(self.adc, self.vref))

    def calibrate(self, ppm=ATMOSPHERIC_CO2):
        """Set R0 so that the current reading equals ppm (do it in fresh outdoor air, warmed up)."""
        self.r0 = self.resistance / (ppm / self.a) ** (1.0 / self.b)
        return self.r0

    def start(self):
        return 0

    def collect(self):
        if not self.warm:
            raise NotReady("mq135 warming up")
        return (self.ppm_from_resistance(self.resistance),)

    @property
    def co2(self):
        return self.collect()[0]
