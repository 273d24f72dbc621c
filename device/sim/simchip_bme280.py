# Fake Bosch BME280 (I2C 0x76/0x77) for the virtual board; see chips.py for the chip protocol.
#
# Registers: 0xD0 id (0x60), 0xE0 reset (write 0xB6), 0xF2 ctrl_hum (applies on the next ctrl_meas
# write), 0xF3 status (bit3 measuring, bit0 im_update), 0xF4 ctrl_meas (osrs_t, osrs_p, mode),
# 0xF5 config (stored; the IIR filter is not applied), 0xF7..0xFE data, calibration 0x88..0xA1 and
# 0xE1..0xE7 holding the trimming values of a real device. The raw ADC values are found by inverting
# the datasheet's integer compensation (binary search), so a driver using the Bosch formulas reads back
# the scenario's temperature (degC), pressure (hPa) and humidity (%RH) to within their resolution.
# Forced mode: data appears after the datasheet's max measurement time (status.measuring meanwhile).
# Normal mode: data is fresh whenever it is read.
from chips import FakeChip, _elapsed, _ms, value

BME280_ADDR = 0x76

# trimming values of a real BME280 (T/P as in Bosch's BMP280 datasheet example, H from a device dump)
CAL = {"T1": 27504, "T2": 26435, "T3": -1000,
       "P1": 36477, "P2": -10685, "P3": 3024, "P4": 2855, "P5": 140, "P6": -7, "P7": 15500,
       "P8": -14600, "P9": 6000,
       "H1": 75, "H2": 362, "H3": 0, "H4": 313, "H5": 50, "H6": 30}


def _tdiv(a, b):
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def compensate_t(adc_t, c=CAL):
    """Datasheet BME280_compensate_T_int32: returns (T in 0.01 degC, t_fine)."""
    var1 = (((adc_t >> 3) - (c["T1"] << 1)) * c["T2"]) >> 11
    var2 = (((((adc_t >> 4) - c["T1"]) * ((adc_t >> 4) - c["T1"])) >> 12) * c["T3"]) >> 14
    t_fine = var1 + var2
    return (t_fine * 5 + 128) >> 8, t_fine


def compensate_p(adc_p, t_fine, c=CAL):
    """Datasheet BME280_compensate_P_int64: pressure in Pa as Q24.8 (divide by 256)."""
    var1 = t_fine - 128000
    var2 = var1 * var1 * c["P6"]
    var2 = var2 + ((var1 * c["P5"]) << 17)
    var2 = var2 + (c["P4"] << 35)
    var1 = ((var1 * var1 * c["P3"]) >> 8) + ((var1 * c["P2"]) << 12)
    var1 = (((1 << 47) + var1) * c["P1"]) >> 33
    if var1 == 0:
        return 0
    p = 1048576 - adc_p
    p = _tdiv(((p << 31) - var2) * 3125, var1)
    var1 = (c["P9"] * (p >> 13) * (p >> 13)) >> 25
    var2 = (c["P8"] * p) >> 19
    return ((p + var1 + var2) >> 8) + (c["P7"] << 4)


def compensate_h(adc_h, t_fine, c=CAL):
    """Datasheet bme280_compensate_H_int32: %RH as Q22.10 (divide by 1024)."""
    v = t_fine - 76800
    v = (((((adc_h << 14) - (c["H4"] << 20) - (c["H5"] * v)) + 16384) >> 15) *
         (((((((v * c["H6"]) >> 10) * (((v * c["H3"]) >> 11) + 32768)) >> 10) + 2097152) * c["H2"] + 8192) >> 14))
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * c["H1"]) >> 4)
    v = 0 if v < 0 else v
    v = 419430400 if v > 419430400 else v
    return v >> 12


def _search(fn, target, lo, hi, increasing=True):
    """Smallest x in [lo, hi] with fn(x) >= target (increasing) / fn(x) <= target (decreasing), then the
    closer of x and x-1."""
    a, b = lo, hi
    while a < b:
        m = (a + b) // 2
        v = fn(m)
        if (v >= target) if increasing else (v <= target):
            b = m
        else:
            a = m + 1
    if a > lo and abs(fn(a - 1) - target) < abs(fn(a) - target):
        return a - 1
    return a


def raw_values(t, p_hpa, rh, c=CAL):
    """(adc_T, adc_P, adc_H) that compensate to t degC, p_hpa hPa, rh %RH."""
    adc_t = _search(lambda x: compensate_t(x, c)[0], t * 100.0, 0, 0xFFFFF)
    t_fine = compensate_t(adc_t, c)[1]
    adc_p = _search(lambda x: compensate_p(x, t_fine, c), p_hpa * 100.0 * 256.0, 0, 0xFFFFF, False)
    adc_h = _search(lambda x: compensate_h(x, t_fine, c), rh * 1024.0, 0, 0xFFFF)
    return adc_t, adc_p, adc_h


def _le16(v):
    v &= 0xFFFF
    return [v & 0xFF, v >> 8]


class BME280(FakeChip):
    def __init__(self, temperature=21.0, pressure=1013.25, humidity=50.0, chip_id=0x60, timing=True):
        FakeChip.__init__(self, timing)
        self.temperature = temperature
        self.pressure = pressure
        self.humidity = humidity
        self.chip_id = chip_id
        self.regs = bytearray(256)
        self._ptr = 0
        self._t0 = 0
        self._busy_ms = 0
        self._pending = None
        self._reset()

    def _reset(self):
        r = self.regs
        for i in range(256):
            r[i] = 0
        r[0xD0] = self.chip_id
        cal = (_le16(CAL["T1"]) + _le16(CAL["T2"]) + _le16(CAL["T3"]) + _le16(CAL["P1"]) + _le16(CAL["P2"]) +
               _le16(CAL["P3"]) + _le16(CAL["P4"]) + _le16(CAL["P5"]) + _le16(CAL["P6"]) + _le16(CAL["P7"]) +
               _le16(CAL["P8"]) + _le16(CAL["P9"]) + [0, CAL["H1"]])
        r[0x88:0x88 + len(cal)] = bytes(cal)
        h4, h5 = CAL["H4"], CAL["H5"]
        hum = _le16(CAL["H2"]) + [CAL["H3"], (h4 >> 4) & 0xFF, (h4 & 0x0F) | ((h5 & 0x0F) << 4),
                                  (h5 >> 4) & 0xFF, CAL["H6"] & 0xFF]
        r[0xE1:0xE8] = bytes(hum)
        r[0xF7:0xFF] = b"\x80\x00\x00\x80\x00\x00\x80\x00"
        self._osrs_h = 0
        self._pending = None

    @property
    def mode(self):
        return self.regs[0xF4] & 3

    def _measure_time_ms(self):
        ot = (self.regs[0xF4] >> 5) & 7
        op = (self.regs[0xF4] >> 2) & 7
        n = {0: 0, 1: 1, 2: 2, 3: 4, 4: 8}
        t = 1.25 + 2.3 * n.get(ot, 16) + (2.3 * n.get(op, 16) + 0.575 if op else 0)
        t += (2.3 * n.get(self._osrs_h, 16) + 0.575) if self._osrs_h else 0
        return int(t + 0.999)

    def _sample(self):
        adc_t, adc_p, adc_h = raw_values(value(self.temperature), value(self.pressure), value(self.humidity))
        ctrl = self.regs[0xF4]
        data = bytearray(b"\x80\x00\x00\x80\x00\x00\x80\x00")
        if (ctrl >> 2) & 7:
            data[0:3] = bytes([adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0xF) << 4])
        if (ctrl >> 5) & 7:
            data[3:6] = bytes([adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0xF) << 4])
        if self._osrs_h:
            data[6:8] = bytes([adc_h >> 8, adc_h & 0xFF])
        return bytes(data)

    def _update(self):
        if self._pending is not None and (not self.timing or _elapsed(self._t0) >= self._busy_ms):
            self.regs[0xF7:0xFF] = self._pending
            self._pending = None
            if self.mode in (1, 2):
                self.regs[0xF4] &= 0xFC  # forced mode returns to sleep

    def on_write(self, data):
        self._update()
        if len(data) == 1:
            self._ptr = data[0]
            return
        if len(data) % 2:
            self._nack()
        for i in range(0, len(data), 2):
            self._write_reg(data[i], data[i + 1])

    def _write_reg(self, reg, val):
        if reg == 0xE0:
            if val == 0xB6:
                self._reset()
        elif reg == 0xF2:
            self.regs[0xF2] = val & 0x07
        elif reg == 0xF4:
            self.regs[0xF4] = val
            self._osrs_h = self.regs[0xF2] & 7
            if val & 3 in (1, 2):  # forced: one measurement
                self._pending = self._sample()
                self._t0 = _ms()
                self._busy_ms = self._measure_time_ms()
        elif reg == 0xF5:
            self.regs[0xF5] = val & 0xFD
        # other registers are read-only: writes are ignored, as on the chip

    def on_read(self, n):
        self._update()
        if self.mode == 3 and self._ptr + n > 0xF7 and self._ptr <= 0xFE:
            self.regs[0xF7:0xFF] = self._sample()
        self.regs[0xF3] = 0x08 if self._pending is not None else 0
        out = bytearray(n)
        for i in range(n):
            out[i] = self.regs[(self._ptr + i) & 0xFF]
        self._ptr = (self._ptr + n) & 0xFF
        return bytes(out)
