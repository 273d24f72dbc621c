# The virtual board's machine module and fake chips (runs under CPython and MicroPython).
import time

import chips
import machine
import simboard
from devtest import raises, tmpdir
from simchip_bme280 import compensate_h, compensate_p, compensate_t


def _fresh(**kw):
    simboard.reset()
    b = simboard.new_board(**kw)
    simboard.select(b)
    return b


def _sleep_ms(ms):
    try:
        time.sleep_ms(ms)
    except AttributeError:
        time.sleep(ms / 1000)


def test_pin_output_input_pulls_and_irq():
    _fresh()
    out = machine.Pin(2, machine.Pin.OUT, value=1)
    assert simboard.pin_level(2) == 1 and out.value() == 1
    seen = []
    simboard.watch_pin(2, lambda p, v: seen.append((p, v)))
    out.off()
    out.toggle()
    out(0)
    assert seen == [(2, 0), (2, 1), (2, 0)]
    inp = machine.Pin(0, machine.Pin.IN, machine.Pin.PULL_UP)
    assert inp.value() == 1
    events = []
    inp.irq(lambda p: events.append(p.value()), machine.Pin.IRQ_FALLING)
    simboard.set_pin(0, 0)
    simboard.set_pin(0, 0)  # no edge
    simboard.set_pin(0, 1)  # rising: not subscribed
    simboard.set_pin(0, 0)
    assert events == [0, 0]
    down = machine.Pin(5, machine.Pin.IN, machine.Pin.PULL_DOWN)
    assert down.value() == 0
    od = machine.Pin(6, machine.Pin.OPEN_DRAIN, value=1)
    assert od.value() == 1
    simboard.set_pin(6, 0)  # another device pulls the line low
    assert od.value() == 0
    raises(ValueError, machine.Pin, 99)
    raises(ValueError, machine.Pin, 3, 7)


def test_signal_inverts():
    _fresh()
    s = machine.Signal(machine.Pin(4, machine.Pin.OUT), invert=True)
    s.on()
    assert simboard.pin_level(4) == 0
    s.off()
    assert simboard.pin_level(4) == 1 and s.value() == 0


def test_i2c_transactions_reach_the_chip_and_missing_address_is_enodev():
    _fresh()
    i2c = machine.I2C(0, scl=machine.Pin(9), sda=machine.Pin(8), freq=400000)

    class Echo:
        def __init__(self):
            self.log = []

        def i2c_write(self, data):
            self.log.append(("w", bytes(data)))

        def i2c_read(self, n):
            self.log.append(("r", n))
            return bytes(range(n))

    chip = Echo()
    simboard.attach_i2c(0, 0x50, chip)
    assert i2c.scan() == [0x50]
    assert i2c.readfrom_mem(0x50, 0x10, 3) == b"\x00\x01\x02"
    i2c.writeto_mem(0x50, 0x20, b"\xaa\xbb")
    assert i2c.writeto(0x50, b"\x01\x02\x03") == 3
    assert i2c.writevto(0x50, (b"\x04", b"\x05\x06")) == 3
    buf = bytearray(2)
    i2c.readfrom_into(0x50, buf)
    assert buf == bytearray(b"\x00\x01")
    buf4 = bytearray(4)
    i2c.readfrom_mem_into(0x50, 0x0102, buf4, addrsize=16)
    assert chip.log == [("w", b"\x10"), ("r", 3), ("w", b"\x20\xaa\xbb"), ("w", b"\x01\x02\x03"),
                        ("w", b"\x04\x05\x06"), ("r", 2), ("w", b"\x01\x02"), ("r", 4)]
    e = raises(OSError, i2c.readfrom, 0x51, 1)
    assert e.args[0] == 19
    chip.nack = True
    assert i2c.scan() == []
    assert raises(OSError, i2c.writeto, 0x50, b"\x00").args[0] == 19
    simboard.detach_i2c(0, 0x50)
    raises(ValueError, machine.I2C, 5)
    raises(TypeError, simboard.attach_i2c, 0, 0x10, object())


def test_softi2c_bus_is_keyed_by_scl_pin():
    _fresh()
    sht = chips.SHT4x(timing=False)
    simboard.attach_i2c(("soft", 12), 0x44, sht)
    soft = machine.SoftI2C(scl=machine.Pin(12), sda=machine.Pin(13))
    assert soft.scan() == [0x44]
    assert machine.I2C(0).scan() == []
    assert machine.SoftI2C(scl=machine.Pin(14), sda=machine.Pin(13)).scan() == []


def test_sht4x_measurement_crc_and_conversion():
    _fresh()
    sht = chips.SHT4x(temperature=23.5, humidity=61.0)
    simboard.attach_i2c(0, 0x44, sht)
    i2c = machine.I2C(0)
    i2c.writeto(0x44, b"\xfd")
    raises(OSError, i2c.readfrom, 0x44, 6)  # still measuring: NACK
    _sleep_ms(12)
    d = i2c.readfrom(0x44, 6)
    assert chips.crc8(d[0:2]) == d[2] and chips.crc8(d[3:5]) == d[5]
    assert chips.crc8(b"\xbe\xef") == 0x92  # datasheet example
    st = d[0] << 8 | d[1]
    srh = d[3] << 8 | d[4]
    assert abs(-45 + 175 * st / 65535 - 23.5) < 0.01
    assert abs(-6 + 125 * srh / 65535 - 61.0) < 0.01
    raises(OSError, i2c.readfrom, 0x44, 6)  # nothing pending
    sht.temperature = lambda: -10.0
    sht.timing = False
    i2c.writeto(0x44, b"\x89")
    sn = i2c.readfrom(0x44, 6)
    assert (sn[0] << 24 | sn[1] << 16 | sn[3] << 8 | sn[4]) == 0x0F1E2D3C
    i2c.writeto(0x44, b"\xe0")
    d = i2c.readfrom(0x44, 6)
    assert abs(-45 + 175 * (d[0] << 8 | d[1]) / 65535 + 10.0) < 0.05
    sht.fail("crc")
    i2c.writeto(0x44, b"\xfd")
    d = i2c.readfrom(0x44, 6)
    assert chips.crc8(d[0:2]) != d[2]
    sht.fail("nack")
    raises(OSError, i2c.writeto, 0x44, b"\xfd")
    sht.fail(None)
    raises(OSError, i2c.writeto, 0x44, b"\x42")  # unknown command
    i2c.writeto(0x44, b"\x94")


def test_bh1750_modes_and_mtreg():
    _fresh()
    bh = chips.BH1750(lux=500.0, timing=False)
    simboard.attach_i2c(0, 0x23, bh)
    i2c = machine.I2C(0)
    i2c.writeto(0x23, b"\x01")
    i2c.writeto(0x23, b"\x10")
    c = int.from_bytes(i2c.readfrom(0x23, 2), "big")
    assert abs(c / 1.2 - 500) < 1
    i2c.writeto(0x23, bytes([0x40 | (138 >> 5)]))
    i2c.writeto(0x23, bytes([0x60 | (138 & 0x1F)]))
    assert bh.mtreg == 138
    i2c.writeto(0x23, b"\x20")
    c = int.from_bytes(i2c.readfrom(0x23, 2), "big")
    assert abs(c / 1.2 * 69 / 138 - 500) < 1
    assert bh.powered is False  # one-time mode powers down
    assert abs(chips.BH1750.lux_from_count(c, "H", 138) - 500) < 1
    i2c.writeto(0x23, b"\x21")
    c2 = int.from_bytes(i2c.readfrom(0x23, 2), "big")
    assert abs(c2 - 2 * c) <= 2
    bh2 = chips.BH1750(lux=10.0)
    simboard.attach_i2c(0, 0x5C, bh2)
    i2c.writeto(0x5C, b"\x01\x10")
    assert i2c.readfrom(0x5C, 2) == b"\x00\x00"  # first measurement still running
    raises(OSError, i2c.writeto, 0x5C, b"\x99")


def test_bme280_id_calibration_and_inverse_compensation():
    _fresh()
    bme = chips.BME280(temperature=24.37, pressure=987.65, humidity=42.5, timing=False)
    simboard.attach_i2c(1, 0x77, bme)
    i2c = machine.I2C(1)
    assert i2c.readfrom_mem(0x77, 0xD0, 1) == b"\x60"
    cal = i2c.readfrom_mem(0x77, 0x88, 26)
    t1 = cal[0] | cal[1] << 8
    t2 = cal[2] | cal[3] << 8
    assert t1 == 27504 and t2 == 26435
    e = i2c.readfrom_mem(0x77, 0xE1, 7)
    h4 = (e[3] << 4) | (e[4] & 0x0F)
    h5 = (e[5] << 4) | (e[4] >> 4)
    assert (h4, h5) == (313, 50)
    i2c.writeto_mem(0x77, 0xF2, b"\x01")
    i2c.writeto_mem(0x77, 0xF4, bytes([(1 << 5) | (1 << 2) | 1]))  # forced, x1 each
    d = i2c.readfrom_mem(0x77, 0xF7, 8)
    adc_p = (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)
    adc_t = (d[3] << 12) | (d[4] << 4) | (d[5] >> 4)
    adc_h = (d[6] << 8) | d[7]
    t, t_fine = compensate_t(adc_t)
    assert abs(t / 100 - 24.37) <= 0.01
    assert abs(compensate_p(adc_p, t_fine) / 256 / 100 - 987.65) < 0.02
    assert abs(compensate_h(adc_h, t_fine) / 1024 - 42.5) < 0.05
    assert i2c.readfrom_mem(0x77, 0xF4, 1)[0] & 3 == 0  # back to sleep after forced
    bme.temperature = 30.0
    i2c.writeto_mem(0x77, 0xE0, b"\xb6")  # reset
    assert i2c.readfrom_mem(0x77, 0xFA, 3) == b"\x80\x00\x00"
    i2c.writeto_mem(0x77, 0xF4, bytes([(2 << 5) | (2 << 2) | 3]))  # normal mode
    d = i2c.readfrom_mem(0x77, 0xFA, 3)
    t, _ = compensate_t((d[0] << 12) | (d[1] << 4) | (d[2] >> 4))
    assert abs(t / 100 - 30.0) <= 0.01


def test_uart_device_answers_and_feed():
    _fresh()

    class Modem:
        def uart_rx(self, data):
            return b"OK " + data.upper() + b"\n"

    simboard.attach_uart(1, Modem())
    u = machine.UART(1, 9600, tx=17, rx=18)
    assert u.read() is None
    assert u.write(b"at") == 2
    assert u.any() == 6
    assert u.readline() == b"OK AT\n"
    simboard.uart_feed(1, b"abcdef")
    buf = bytearray(4)
    assert u.readinto(buf) == 4 and buf == bytearray(b"abcd")
    assert u.read(10) == b"ef"
    u.init(baudrate=115200, timeout=30)
    t0 = time.time()
    assert u.read(1) is None
    assert time.time() - t0 >= 0.02
    raises(ValueError, machine.UART, 7)
    raises(ValueError, u.init, bits=9)


def test_adc_reads_analog_source_with_attenuation():
    _fresh()
    volts = [0.5]
    simboard.attach_adc(4, lambda: volts[0])
    adc = machine.ADC(machine.Pin(4), atten=machine.ADC.ATTN_11DB)
    assert abs(adc.read_uv() - 500000) < 1000
    raw = adc.read()
    assert abs(raw - round(0.5 / 3.1 * 4095)) <= 1
    assert adc.read_u16() == (raw << 4) | (raw >> 8)
    adc.atten(machine.ADC.ATTN_0DB)
    volts[0] = 2.0  # above 0 dB full scale: saturates
    assert adc.read() == 4095 and adc.read_u16() == 65535
    raises(ValueError, adc.atten, 9)
    raises(ValueError, machine.ADC, machine.Pin(40))


def test_timer_callbacks_fire():
    _fresh()
    hits = []
    t = machine.Timer(0)
    t.init(mode=machine.Timer.PERIODIC, period=20, callback=lambda tm: hits.append(1))
    one = []
    t2 = machine.Timer(1, mode=machine.Timer.ONE_SHOT, period=10, callback=lambda tm: one.append(1))
    _sleep_ms(150)
    t.deinit()
    n = len(hits)
    assert 3 <= n <= 9, n
    assert one == [1]
    _sleep_ms(60)
    assert len(hits) == n
    t2.deinit()
    raises(ValueError, machine.Timer, 9)


def test_rtc_memory_datetime_and_reset_cause_survive_reset():
    d = tmpdir("rtc")
    b = _fresh(dir=d)
    assert machine.reset_cause() == machine.PWRON_RESET
    rtc = machine.RTC()
    rtc.memory(b"keep me")
    rtc.datetime((2024, 5, 17, 4, 12, 30, 0, 0))
    raises(ValueError, rtc.memory, b"x" * 2049)
    e = raises(SystemExit, machine.deepsleep, 1000)
    assert e.args[0] == simboard.EXIT_DEEPSLEEP
    assert b.state["pending"]["sleep_ms"] == 1000
    # the launcher starts the process again
    _fresh(dir=d)
    assert machine.reset_cause() == machine.DEEPSLEEP_RESET
    assert machine.wake_reason() == machine.TIMER_WAKE
    assert machine.RTC().memory() == b"keep me"
    y, mo, day, _wd, h, mi, _s, _us = machine.RTC().datetime()
    assert (y, mo, day, h, mi) == (2024, 5, 17, 12, 30)
    assert raises(SystemExit, machine.reset).args[0] == simboard.EXIT_HARD_RESET
    _fresh(dir=d)
    assert machine.reset_cause() == machine.HARD_RESET
    assert raises(SystemExit, machine.soft_reset).args[0] == simboard.EXIT_SOFT_RESET
    _fresh(dir=d)
    assert machine.reset_cause() == machine.SOFT_RESET
    _fresh(dir=d)  # no pending reset: power cycle clears RTC memory
    assert machine.reset_cause() == machine.PWRON_RESET
    assert machine.RTC().memory() == b""


def test_misc_functions():
    _fresh(mac="02:aa:bb:cc:dd:ee")
    assert machine.unique_id() == b"\x02\xaa\xbb\xcc\xdd\xee"
    assert machine.freq() == 160000000
    machine.freq(240000000)
    assert machine.freq() == 240000000
    raises(ValueError, machine.freq, 123)
    s = machine.disable_irq()
    machine.enable_irq(s)
    machine.idle()
    simboard.queue_pulse(7, 1500)
    assert machine.time_pulse_us(machine.Pin(7, machine.Pin.IN), 1) == 1500
    assert machine.time_pulse_us(machine.Pin(7), 1, 2000) == -2
    machine.lightsleep(5)
    assert machine.wake_reason() == machine.TIMER_WAKE
    w = machine.WDT(timeout=5000)
    w.feed()
    raises(ValueError, machine.WDT, 0, 0)
    simboard.reset()  # stops the watchdog of this board (it would reset the test process)
