# Bosch BME280 temperature / pressure / humidity sensor (I2C, address 0x76 with SDO low, 0x77 high).
# Datasheet: BST-BME280-DS002 rev 1.6: memory map 5.3, calibration table 4.2.2, integer compensation
# 4.2.3 (32-bit temperature, 64-bit pressure, 32-bit humidity), forced mode 3.3.3, timing 9.1.
# The integer versions are used on purpose: ESP32 MicroPython floats are single precision.
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from fieldlink.drivers.base import InvalidReading, sleep_ms

_REG_CALIB00 = const(0x88)   # 0x88..0xA1: T1..T3, P1..P9, (0xA0 unused), H1
_REG_CHIP_ID = const(0xD0)
_REG_RESET = const(0xE0)
_REG_CALIB26 = const(0xE1)   # 0xE1..0xE7: H2..H6
_REG_CTRL_HUM = const(0xF2)
_REG_STATUS = const(0xF3)
_REG_CTRL_MEAS = const(0xF4)
_REG_CONFIG = const(0xF5)
_REG_DATA = const(0xF7)      # press[3] temp[3] hum[2]
_CHIP_ID = const(0x60)
_RESET_WORD = const(0xB6)
_MODE_FORCED = const(0x01)
_STATUS_MEASURING = const(0x08)
_SKIPPED_20 = const(0x80000)
_SKIPPED_16 = const(0x8000)

ADDRESS = const(0x76)
_OSRS = {1: 1, 2: 2, 4: 3, 8: 4, 16: 5}


def _u16(b, i):
    return b[i] | (b[i + 1] << 8)


def _s16(b, i):
    v = b[i] | (b[i + 1] << 8)
    return v - 65536 if v & 0x8000 else v


def _s8(v):
    return v - 256 if v & 0x80 else v


def _cdiv(a, b):
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


class BME280:
    QUANTITIES = ("temperature", "pressure", "relative_humidity")

    def __init__(self, i2c, address=ADDRESS, osrs_t=1, osrs_p=1, osrs_h=1):
        self.i2c = i2c
        self.address = address
        if osrs_t not in _OSRS or osrs_p not in _OSRS or osrs_h not in _OSRS:
            raise ValueError("oversampling must be 1, 2, 4, 8 or 16")
        self._hum = bytearray((_OSRS[osrs_h],))
        self._meas = bytearray(((_OSRS[osrs_t] << 5) | (_OSRS[osrs_p] << 2) | _MODE_FORCED,))
        # datasheet 9.1, maximum measurement time in ms
        self._wait = int(1.25 + 2.3 * osrs_t + 2.3 * osrs_p + 0.575 + 2.3 * osrs_h + 0.575) + 1
        self._buf = bytearray(8)
        self._one = bytearray(1)
        chip = i2c.readfrom_mem(address, _REG_CHIP_ID, 1)[0]
        if chip != _CHIP_ID:
            raise OSError(19)  # ENODEV: something else answers at this address (BMP280 is 0x58)
        c = i2c.readfrom_mem(address, _REG_CALIB00, 26)
        self.set_calibration(c, i2c.readfrom_mem(address, _REG_CALIB26, 7))
        i2c.writeto_mem(address, _REG_CONFIG, b"\x00")  # filter off, standby irrelevant in forced mode
        self.t_fine = 0

    def set_calibration(self, c, h):
        """c: the 26 bytes at 0x88..0xA1; h: the 7 bytes at 0xE1..0xE7 (datasheet table 16)."""
        self.dig_T1 = _u16(c, 0)
        self.dig_T2 = _s16(c, 2)
        self.dig_T3 = _s16(c, 4)
        self.dig_P1 = _u16(c, 6)
        self.dig_P = [_s16(c, 8 + 2 * i) for i in range(8)]  # P2..P9
        self.dig_H1 = c[25]
        self.dig_H2 = _s16(h, 0)
        self.dig_H3 = h[2]
        self.dig_H4 = (_s8(h[3]) * 16) | (h[4] & 0x0F)
        self.dig_H5 = (_s8(h[5]) * 16) | (h[4] >> 4)
        self.dig_H6 = _s8(h[6])

    def reset(self):
        self.i2c.writeto_mem(self.address, _REG_RESET, bytes((_RESET_WORD,)))
        sleep_ms(3)

    def start(self):
        """Trigger one forced-mode measurement; returns the maximum conversion time in ms."""
        self.i2c.writeto_mem(self.address, _REG_CTRL_HUM, self._hum)
        self.i2c.writeto_mem(self.address, _REG_CTRL_MEAS, self._meas)
        return self._wait

    def collect(self):
        """Returns (temperature degC, pressure hPa, relative_humidity %)."""
        self.i2c.readfrom_mem_into(self.address, _REG_STATUS, self._one)
        if self._one[0] & _STATUS_MEASURING:
            raise OSError(110)  # ETIMEDOUT: conversion not finished
        b = self._buf
        self.i2c.readfrom_mem_into(self.address, _REG_DATA, b)
        adc_p = (b[0] << 12) | (b[1] << 4) | (b[2] >> 4)
        adc_t = (b[3] << 12) | (b[4] << 4) | (b[5] >> 4)
        adc_h = (b[6] << 8) | b[7]
        if adc_t == _SKIPPED_20 or adc_p == _SKIPPED_20 or adc_h == _SKIPPED_16:
            raise InvalidReading("bme280 measurement skipped")
        t = self.compensate_t(adc_t)
        p = self.compensate_p(adc_p)
        h = self.compensate_h(adc_h)
        if p == 0:
            raise InvalidReading("bme280 pressure")
        return t / 100, p / 25600, h / 1024

    # Bosch datasheet 4.2.3, transcribed; results: T in 0.01 degC, P in Pa/256 (Q24.8), H in %/1024 (Q22.10)
    def compensate_t(self, adc_t):
        t1 = self.dig_T1
        var1 = (((adc_t >> 3) - (t1 << 1)) * self.dig_T2) >> 11
        x = (adc_t >> 4) - t1
        var2 = (((x * x) >> 12) * self.dig_T3) >> 14
        self.t_fine = var1 + var2
        return (self.t_fine * 5 + 128) >> 8

    def compensate_p(self, adc_p):
        p2, p3, p4, p5, p6, p7, p8, p9 = self.dig_P
        var1 = self.t_fine - 128000
        var2 = var1 * var1 * p6
        var2 = var2 + ((var1 * p5) << 17)
        var2 = var2 + (p4 << 35)
        var1 = ((var1 * var1 * p3) >> 8) + ((var1 * p2) << 12)
        var1 = (((1 << 47) + var1) * self.dig_P1) >> 33
        if var1 == 0:
            return 0  # avoid division by zero
        p = 1048576 - adc_p
        p = _cdiv(((p << 31) - var2) * 3125, var1)
        var1 = (p9 * (p >> 13) * (p >> 13)) >> 25
        var2 = (p8 * p) >> 19
        return ((p + var1 + var2) >> 8) + (p7 << 4)

    def compensate_h(self, adc_h):
        v = self.t_fine - 76800
        v = ((((adc_h << 14) - (self.dig_H4 << 20) - (self.dig_H5 * v)) + 16384) >> 15) * \
            (((((((v * self.dig_H6) >> 10) * (((v * self.dig_H3) >> 11) + 32768)) >> 10) + 2097152)
              * self.dig_H2 + 8192) >> 14)
        v = v - (((((v >> 15) * (v >> 15)) >> 7) * self.dig_H1) >> 4)
        v = 0 if v < 0 else v
        v = 419430400 if v > 419430400 else v
        return v >> 12

    @property
    def measurements(self):
        sleep_ms(self.start())
        return self.collect()

    @property
    def temperature(self):
        return self.measurements[0]

    @property
    def pressure(self):
        return self.measurements[1]

    @property
    def relative_humidity(self):
        return self.measurements[2]
