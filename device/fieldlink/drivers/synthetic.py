# Synthetic sensor for the simulator and demos: a day/night sine plus deterministic noise.
#   s = sin(2*pi*(phase - 0.25)), phase = ((t_ms + offset_ms) mod period_ms) / period_ms
#   (s = -1 at "midnight", phase 0; +1 at "noon", phase 0.5)
#   temperature = t_mean + t_amp * s + noise_t * u
#   relative_humidity = clamp(rh_mean - rh_amp * s + noise_rh * u, 0, 100)
#   lux = max(0, s) * lux_peak * (1 + noise_lux * u)     (0 at night)
# u is uniform in [-1, 1) from a xorshift32 generator with a fixed seed, so two runs with the same seed
# and the same clock produce the same readings on CPython and MicroPython. `enabled = False` makes the
# sensor behave like an unplugged chip (OSError ENODEV) until it is switched back on.
import math

from fieldlink.runtime.clock import ticks_ms as _ms


class Synthetic:
    QUANTITIES = ("temperature", "relative_humidity", "lux")

    def __init__(self, seed=1, clock=None, period_ms=86400000, offset_ms=0, t_mean=20.0, t_amp=5.0,
                 rh_mean=55.0, rh_amp=15.0, lux_peak=20000.0, noise_t=0.2, noise_rh=1.0, noise_lux=0.05):
        if period_ms <= 0:
            raise ValueError("period_ms must be > 0")
        self.clock = clock or _ms
        self.period_ms = period_ms
        self.offset_ms = offset_ms
        self.t_mean = t_mean
        self.t_amp = t_amp
        self.rh_mean = rh_mean
        self.rh_amp = rh_amp
        self.lux_peak = lux_peak
        self.noise_t = noise_t
        self.noise_rh = noise_rh
        self.noise_lux = noise_lux
        self.enabled = True
        self.seed(seed)

    def seed(self, seed):
        self._state = (seed & 0xFFFFFFFF) or 0x9E3779B9  # xorshift state must not be zero

    def _uniform(self):
        x = self._state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._state = x
        return (x >> 8) / 8388608.0 - 1.0  # 24 bits -> [-1, 1)

    def day_sine(self, t_ms):
        phase = ((t_ms + self.offset_ms) % self.period_ms) / self.period_ms
        return math.sin(2.0 * math.pi * (phase - 0.25))

    def start(self):
        return 0

    def collect(self, t_ms=None):
        if not self.enabled:
            raise OSError(19)  # ENODEV, like a missing chip
        s = self.day_sine(self.clock() if t_ms is None else t_ms)
        t = self.t_mean + self.t_amp * s + self.noise_t * self._uniform()
        rh = self.rh_mean - self.rh_amp * s + self.noise_rh * self._uniform()
        rh = 0.0 if rh < 0.0 else (100.0 if rh > 100.0 else rh)
        n = self._uniform()
        lux = s * self.lux_peak * (1.0 + self.noise_lux * n) if s > 0.0 else 0.0
        return t, rh, lux

    @property
    def temperature(self):
        return self.collect()[0]

    @property
    def relative_humidity(self):
        return self.collect()[1]

    @property
    def lux(self):
        return self.collect()[2]
