# BME280 driver: Bosch integer compensation checked against the datasheet's computation example
# (BMP280 datasheet 3.12 / same T and P formulas in BME280 4.2.3) and against the datasheet's
# double-precision formulas (appendix 8.1) written out below; register transactions on a recording bus.
import struct

from devtest import raises

from fieldlink.drivers.base import InvalidReading
from fieldlink.drivers.bme280 import BME280

# Bosch datasheet example calibration (dig_T1..dig_P9) and raw values adc_T = 519888, adc_P = 415148
T1, T2, T3 = 27504, 26435, -1000
P = (36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
# humidity calibration: a typical production part (values as read from a BME280)
H1, H2, H3, H4, H5, H6 = 75, 362, 0, 313, 50, 30
ADC_T, ADC_P, ADC_H = 519888, 415148, 30000


def calib_bytes():
    c = struct.pack("<HhhHhhhhhhhh", T1, T2, T3, *P) + b"\x00" + bytes((H1,))
    # 0xE1..0xE7: H2 (s16 LE), H3, E4 = H4[11:4], E5 = H5[3:0]<<4 | H4[3:0], E6 = H5[11:4], H6
    h = struct.pack("<hB", H2, H3) + bytes((H4 >> 4, ((H5 & 0xF) << 4) | (H4 & 0xF), H5 >> 4, H6))
    return c, h


class RegChip:
    """Register-file I2C target: a write sets the pointer (and writes data), reads auto-increment."""

    def __init__(self):
        self.regs = bytearray(256)
        self.ptr = 0
        self.writes = []
        self.regs[0xD0] = 0x60
        c, h = calib_bytes()
        self.regs[0x88:0x88 + 26] = c
        self.regs[0xE1:0xE1 + 7] = h
        self.set_raw(ADC_P, ADC_T, ADC_H)

    def set_raw(self, p, t, h):
        self.regs[0xF7:0xFF] = bytes((p >> 12, (p >> 4) & 0xFF, (p & 0xF) << 4,
                                      t >> 12, (t >> 4) & 0xFF, (t & 0xF) << 4, h >> 8, h & 0xFF))

    def i2c_write(self, data):
        self.writes.append(bytes(data))
        self.ptr = data[0]
        for i in range(1, len(data)):
            self.regs[self.ptr + i - 1] = data[i]

    def i2c_read(self, n):
        r = bytes(self.regs[self.ptr:self.ptr + n])
        self.ptr += n
        return r


class RecBus:
    def __init__(self, chip=None, addr=0x76):
        self.chip = chip
        self.addr = addr
        self.log = []

    def _c(self, addr):
        if self.chip is None or addr != self.addr:
            raise OSError(19)
        return self.chip

    def writeto(self, addr, buf, stop=True):
        self.log.append(("w", addr, bytes(buf)))
        self._c(addr).i2c_write(bytes(buf))

    def readfrom_into(self, addr, buf, stop=True):
        self.log.append(("r", addr, len(buf)))
        d = self._c(addr).i2c_read(len(buf))
        for i in range(len(buf)):
            buf[i] = d[i]

    def readfrom_mem(self, addr, reg, n):
        b = bytearray(n)
        self.readfrom_mem_into(addr, reg, b)
        return bytes(b)

    def readfrom_mem_into(self, addr, reg, buf):
        self.writeto(addr, bytes((reg,)), False)
        self.readfrom_into(addr, buf)

    def writeto_mem(self, addr, reg, buf):
        self.writeto(addr, bytes((reg,)) + bytes(buf))


def double_t_fine_and_t(adc_t):
    var1 = (adc_t / 16384.0 - T1 / 1024.0) * T2
    var2 = ((adc_t / 131072.0 - T1 / 8192.0) * (adc_t / 131072.0 - T1 / 8192.0)) * T3
    return int(var1 + var2), (var1 + var2) / 5120.0


def double_p(adc_p, t_fine):
    P1, P2, P3, P4, P5, P6, P7, P8, P9 = P
    var1 = t_fine / 2.0 - 64000.0
    var2 = var1 * var1 * P6 / 32768.0
    var2 = var2 + var1 * P5 * 2.0
    var2 = var2 / 4.0 + P4 * 65536.0
    var1 = (P3 * var1 * var1 / 524288.0 + P2 * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * P1
    p = 1048576.0 - adc_p
    p = (p - var2 / 4096.0) * 6250.0 / var1
    var1 = P9 * p * p / 2147483648.0
    var2 = p * P8 / 32768.0
    return p + (var1 + var2 + P7) / 16.0


def double_h(adc_h, t_fine):
    v = t_fine - 76800.0
    v = (adc_h - (H4 * 64.0 + H5 / 16384.0 * v)) * (
        H2 / 65536.0 * (1.0 + H6 / 67108864.0 * v * (1.0 + H3 / 67108864.0 * v)))
    v = v * (1.0 - H1 * v / 524288.0)
    return 0.0 if v < 0.0 else (100.0 if v > 100.0 else v)


def make():
    bus = RecBus(RegChip())
    return bus, BME280(bus)


def test_init_reads_id_and_calibration_registers():
    bus, s = make()
    assert bus.log == [("w", 0x76, b"\xd0"), ("r", 0x76, 1), ("w", 0x76, b"\x88"), ("r", 0x76, 26),
                       ("w", 0x76, b"\xe1"), ("r", 0x76, 7), ("w", 0x76, b"\xf5\x00")]
    assert (s.dig_T1, s.dig_T2, s.dig_T3, s.dig_P1) == (T1, T2, T3, P[0])
    assert s.dig_P == list(P[1:])
    assert (s.dig_H1, s.dig_H2, s.dig_H3, s.dig_H4, s.dig_H5, s.dig_H6) == (H1, H2, H3, H4, H5, H6)


def test_negative_h4_h5_are_sign_extended():
    # E4 = 0xFF, E5 = 0xFE, E6 = 0xFF: H4 = 0xFF*16 | 0xE as signed 12-bit = -16 | 14 = -2;
    # H5 = 0xFF*16 | 0xF -> -16 | 15 = -1
    chip = RegChip()
    chip.regs[0xE4:0xE7] = b"\xff\xfe\xff"
    s = BME280(RecBus(chip))
    assert s.dig_H4 == -2 and s.dig_H5 == -1


def test_datasheet_temperature_example():
    # Datasheet example: adc_T = 519888 -> t_fine = 128422, T = 2508 (25.08 degC)
    _, s = make()
    assert s.compensate_t(ADC_T) == 2508
    assert s.t_fine == 128422
    tf, t = double_t_fine_and_t(ADC_T)
    assert tf == 128422 and abs(t - 25.08) < 0.005


def test_pressure_matches_datasheet_double_formula():
    # Datasheet example: adc_P = 415148 -> p = 100653.27 Pa (1006.53 hPa); the 64-bit integer result
    # (Q24.8) must agree with the double-precision formula to a few hundredths of a pascal.
    _, s = make()
    s.compensate_t(ADC_T)
    q = s.compensate_p(ADC_P)
    pd = double_p(ADC_P, 128422)
    assert abs(pd - 100653.27) < 0.05
    assert abs(q / 256 - pd) < 0.05
    assert round(q / 25600, 2) == 1006.53


def test_humidity_matches_datasheet_double_formula():
    _, s = make()
    s.compensate_t(ADC_T)
    for adc_h in (20000, 25000, ADC_H, 35000, 40000):
        h = s.compensate_h(adc_h) / 1024
        assert abs(h - double_h(adc_h, 128422)) < 0.02, adc_h


def test_forced_measurement_transactions_and_values():
    bus, s = make()
    del bus.log[:]
    t, p, h = s.measurements
    # ctrl_hum = osrs_h x1; ctrl_meas = osrs_t x1 (001 << 5) | osrs_p x1 (001 << 2) | forced (01) = 0x25
    assert bus.log == [("w", 0x76, b"\xf2\x01"), ("w", 0x76, b"\xf4\x25"),
                       ("w", 0x76, b"\xf3"), ("r", 0x76, 1), ("w", 0x76, b"\xf7"), ("r", 0x76, 8)]
    assert t == 25.08
    assert abs(p - 1006.5325) < 0.001
    assert abs(h - double_h(ADC_H, 128422)) < 0.02


def test_oversampling_sets_ctrl_bytes_and_wait():
    bus = RecBus(RegChip(), addr=0x77)
    s = BME280(bus, address=0x77, osrs_t=2, osrs_p=16, osrs_h=4)
    del bus.log[:]
    w = s.start()
    # osrs codes: x2 -> 010, x16 -> 101, x4 -> 011: ctrl_meas = 010_101_01 = 0x55, ctrl_hum = 0x03
    assert bus.log == [("w", 0x77, b"\xf2\x03"), ("w", 0x77, b"\xf4\x55")]
    # datasheet 9.1 max: 1.25 + 2.3*2 + 2.3*16 + 0.575 + 2.3*4 + 0.575 = 53.0 ms
    assert w == 54
    raises(ValueError, BME280, bus, 0x77, 3)


def test_skipped_measurement_is_invalid():
    bus, s = make()
    bus.chip.set_raw(0x80000, ADC_T, ADC_H)
    raises(InvalidReading, s.collect)
    bus.chip.set_raw(ADC_P, ADC_T, 0x8000)
    raises(InvalidReading, s.collect)


def test_still_measuring_is_a_timeout():
    bus, s = make()
    bus.chip.regs[0xF3] = 0x08
    e = raises(OSError, s.collect)
    assert e.args[0] == 110


def test_wrong_chip_id_and_missing_chip():
    chip = RegChip()
    chip.regs[0xD0] = 0x58  # BMP280
    e = raises(OSError, BME280, RecBus(chip))
    assert e.args[0] == 19
    e = raises(OSError, BME280, RecBus(None))
    assert e.args[0] == 19
