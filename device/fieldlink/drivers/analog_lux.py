# Analog light sensors read through the ESP32 ADC (machine.ADC, 11 dB attenuation, read_uv()).
# Two documented curves (docs/drivers.md):
#  "temt6000": Vishay TEMT6000X01 phototransistor with a load resistor R_load to GND, output at the
#     emitter. Photocurrent I = V / R_load; datasheet typical I_PCE = 50 uA at E_v = 20 lx (V_CE = 5 V),
#     i.e. 2.5 uA/lx, linear: lux = V / R_load / 2.5e-6. Default R_load 10 kOhm: 1 V = 40 lx.
#  "ldr": CdS photoresistor (GL5528 class) from the supply to the ADC pin, fixed resistor R_fixed to GND.
#     R_ldr = R_fixed * (Vcc - V) / V; the datasheet gives R10 (resistance at 10 lx) and gamma
#     (log10(R10/R100)); lux = 10 * (R10 / R_ldr) ** (1 / gamma). GL5528: R10 ~ 10..20 kOhm, gamma 0.7.
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from fieldlink.drivers.base import InvalidReading

TEMT6000_A_PER_LUX = 2.5e-6
_SATURATION_MARGIN = const(20)  # mV below the full-scale value treated as clipped


def read_volts(adc, vref=3.3):
    """Volts from a machine.ADC: calibrated read_uv() when the port has it, else read_u16 * vref."""
    try:
        return adc.read_uv() / 1000000
    except AttributeError:
        return adc.read_u16() * vref / 65535


class AnalogLux:
    QUANTITIES = ("lux",)

    def __init__(self, adc, curve="temt6000", r_load=10000.0, vcc=3.3, r_fixed=10000.0,
                 r10=15000.0, gamma=0.7, full_scale=3.1):
        if curve not in ("temt6000", "ldr"):
            raise ValueError("curve must be temt6000 or ldr")
        self.adc = adc
        self.curve = curve
        self.r_load = r_load
        self.vcc = vcc
        self.r_fixed = r_fixed
        self.r10 = r10
        self.gamma = gamma
        self.full_scale = full_scale  # ESP32 at 11 dB attenuation reads up to ~3.1 V

    def lux_from_volts(self, v):
        if v < 0 or v > self.full_scale - _SATURATION_MARGIN / 1000:
            raise InvalidReading("adc out of range")
        if self.curve == "temt6000":
            return v / self.r_load / TEMT6000_A_PER_LUX
        if v <= 0:
            return 0.0  # LDR open (dark beyond the range): no current through the divider
        if v >= self.vcc:
            raise InvalidReading("ldr shorted")
        r_ldr = self.r_fixed * (self.vcc - v) / v
        return 10.0 * (self.r10 / r_ldr) ** (1.0 / self.gamma)

    def start(self):
        return 0

    def collect(self):
        return (self.lux_from_volts(read_volts(self.adc, self.vcc)),)

    @property
    def volts(self):
        return read_volts(self.adc, self.vcc)

    @property
    def lux(self):
        return self.collect()[0]
