# Analog drivers (light sensor curves, MQ-135) and the synthetic sensor. Expected values are computed
# by hand below from the documented formulas (docs/drivers.md).
from devtest import raises

from fieldlink.drivers.base import InvalidReading, NotReady
from fieldlink.drivers.analog_lux import AnalogLux, read_volts
from fieldlink.drivers.mq135 import MQ135
from fieldlink.drivers.synthetic import Synthetic


class UvADC:
    def __init__(self, volts):
        self.volts = volts

    def read_uv(self):
        return int(self.volts * 1000000)


class U16ADC:
    def __init__(self, raw):
        self.raw = raw

    def read_u16(self):
        return self.raw


def test_read_volts_prefers_read_uv():
    assert read_volts(UvADC(1.25)) == 1.25
    assert abs(read_volts(U16ADC(32768), 3.3) - 1.65002) < 1e-4  # 32768 / 65535 * 3.3


def test_temt6000_linear_curve():
    # 1.0 V over 10 kOhm = 100 uA; 2.5 uA/lx (50 uA at 20 lx, TEMT6000X01 datasheet) -> 40 lx
    s = AnalogLux(UvADC(1.0))
    assert abs(s.lux - 40.0) < 1e-6
    s.adc.volts = 0.0
    assert s.lux == 0.0
    s = AnalogLux(UvADC(0.5), r_load=4700.0)
    assert abs(s.lux - 0.5 / 4700.0 / 2.5e-6) < 1e-6  # 42.553 lx
    s.adc.volts = 3.2  # at/over the ADC's full scale: clipped, not a measurement
    raises(InvalidReading, s.collect)


def test_ldr_curve():
    # divider: LDR from 3.3 V to the pin, 10 kOhm to GND; at 1.65 V R_ldr = 10k * (3.3 - 1.65) / 1.65 = 10k
    # lux = 10 * (R10 / R_ldr) ** (1 / gamma) = 10 * 1.5 ** (1 / 0.7) = 10 * e^(0.405465 * 1.428571)
    #     = 10 * e^0.579236 = 17.8466 lx
    s = AnalogLux(UvADC(1.65), curve="ldr", r10=15000.0, gamma=0.7)
    assert abs(s.lux - 17.8466) < 1e-3
    # at 10 lx the LDR is R10: V = 3.3 * 10k / (15k + 10k) = 1.32 V
    s.adc.volts = 1.32
    assert abs(s.lux - 10.0) < 1e-6
    raises(ValueError, AnalogLux, UvADC(1.0), "photodiode")


class Clock:
    def __init__(self, t=0):
        self.t = t

    def __call__(self):
        return self.t


def test_mq135_resistance_and_ppm():
    # Vout 1.0 V at Vc 5 V, RL 10 kOhm: Rs = 10k * (5 - 1) / 1 = 40 kOhm
    # R0 = 76630: ratio 0.521989; ln = -0.650109; * b (-2.769034857) = 1.800175; e^ = 6.050798;
    # ppm = 116.6020682 * 6.050798 = 705.52
    clk = Clock(0)
    s = MQ135(UvADC(1.0), warmup_ms=0, clock=clk)
    assert abs(s.resistance - 40000.0) < 1e-6
    assert abs(s.co2 - 705.52) < 0.02
    # Rs == R0 -> ppm == a
    s.r0 = 40000.0
    assert abs(s.co2 - 116.6020682) < 1e-6
    # a 2:1 divider in front of the ADC: 0.5 V at the pin is 1.0 V at the sensor
    s2 = MQ135(UvADC(0.5), r0=40000.0, divider=0.5, warmup_ms=0, clock=clk)
    assert abs(s2.co2 - 116.6020682) < 1e-6


def test_mq135_warmup_and_calibration():
    clk = Clock(1000)
    s = MQ135(UvADC(1.0), warmup_ms=60000, clock=clk)
    raises(NotReady, s.collect)
    clk.t = 60999
    raises(NotReady, s.collect)
    clk.t = 61000
    assert s.collect()[0] > 0
    r0 = s.calibrate(400.0)
    # R0 = Rs / (400 / a) ** (1 / b): 400 / a = 3.430471, ln = 1.232698, * (1 / b = -0.361137)
    #    = -0.445172, e^ = 0.640714 -> R0 = 40000 / 0.640714 = 62430.4 ohm
    assert abs(r0 - 62430.4) < 1.0
    assert abs(s.co2 - 400.0) < 1e-6
    s.adc.volts = 0.0
    raises(InvalidReading, s.collect)
    s.adc.volts = 5.0
    raises(InvalidReading, s.collect)


def test_synthetic_is_deterministic_per_seed():
    clk = Clock(0)
    a = Synthetic(seed=42, clock=clk)
    b = Synthetic(seed=42, clock=clk)
    c = Synthetic(seed=43, clock=clk)
    ra = [a.collect() for _ in range(5)]
    assert ra == [b.collect() for _ in range(5)]
    assert ra != [c.collect() for _ in range(5)]
    a.seed(42)
    assert a.collect() == ra[0]


def test_synthetic_day_night_shape():
    clk = Clock(0)
    s = Synthetic(seed=7, clock=clk, period_ms=1000, t_mean=20.0, t_amp=5.0, rh_mean=50.0, rh_amp=10.0,
                  lux_peak=1000.0, noise_t=0.1, noise_rh=0.5, noise_lux=0.02)
    clk.t = 0  # midnight: s = sin(-pi/2) = -1
    t, rh, lux = s.collect()
    assert abs(t - 15.0) <= 0.1 and abs(rh - 60.0) <= 0.5 and lux == 0.0
    clk.t = 500  # noon: s = +1
    t, rh, lux = s.collect()
    assert abs(t - 25.0) <= 0.1 and abs(rh - 40.0) <= 0.5 and abs(lux - 1000.0) <= 20.0
    clk.t = 1500  # next period's noon again
    assert abs(s.collect()[0] - 25.0) <= 0.1
    clk.t = 250  # 06:00: s = 0
    t, rh, lux = s.collect()
    assert abs(t - 20.0) <= 0.1 and lux < 1.0


def test_synthetic_toggle_off_and_on():
    s = Synthetic(clock=Clock(0))
    s.enabled = False
    assert raises(OSError, s.collect).args[0] == 19
    s.enabled = True
    assert len(s.collect()) == 3
