# Sensor manager: drivers built from the board dict, scheduling by interval, readings with a validity
# flag, per-sensor error counters (crc, io, timeout, invalid), never an exception out of read().
from devtest import raises

from fieldlink.drivers.bh1750 import BH1750
from fieldlink.drivers.bme280 import BME280
from fieldlink.drivers.ds18b20 import DS18B20
from fieldlink.drivers.mq135 import MQ135
from fieldlink.drivers.pzem004t import PZEM004T
from fieldlink.drivers.sht4x import SHT4x
from fieldlink.drivers.synthetic import Synthetic
from fieldlink.drivers.analog_lux import AnalogLux
from fieldlink.node.sensors import QUANTITIES, SensorManager, error_kind

# SHT4x frame for T = 25.0 degC (0x6666, CRC 0x93) and RH = 56.500954 % (0x8000, CRC 0xA2);
# CRCs from the PyPI `crc` package.
GOOD = b"\x66\x66\x93\x80\x00\xa2"
BAD_CRC = b"\x66\x66\x93\x80\x00\xa3"


class SHTChip:
    def __init__(self):
        self.frame = GOOD
        self.cmds = []

    def i2c_write(self, data):
        self.cmds.append(bytes(data))

    def i2c_read(self, n):
        return self.frame[:n]


class LuxChip:
    def i2c_write(self, data):
        pass

    def i2c_read(self, n):
        return b"\x01\xe0"  # 480 counts / 1.2 = 400 lx


class Bus:
    def __init__(self):
        self.chips = {}

    def _c(self, addr):
        c = self.chips.get(addr)
        if c is None:
            raise OSError(19)
        return c

    def writeto(self, addr, buf, stop=True):
        self._c(addr).i2c_write(bytes(buf))

    def readfrom_into(self, addr, buf, stop=True):
        d = self._c(addr).i2c_read(len(buf))
        for i in range(len(buf)):
            buf[i] = d[i]

    def readfrom_mem(self, addr, reg, n):
        self.writeto(addr, bytes((reg,)))
        b = bytearray(n)
        self.readfrom_into(addr, b)
        return bytes(b)

    def readfrom_mem_into(self, addr, reg, buf):
        self.writeto(addr, bytes((reg,)))
        self.readfrom_into(addr, buf)

    def writeto_mem(self, addr, reg, buf):
        self.writeto(addr, bytes((reg,)) + bytes(buf))


class Clock:
    def __init__(self, t=0):
        self.t = t

    def __call__(self):
        return self.t


BOARD = {
    "i2c": [{"id": 0, "scl": 9, "sda": 8, "freq": 400000}],
    "sensors": [
        {"name": "sht", "driver": "sht4x", "bus": "i2c0", "address": 0x44, "interval_ms": 2000},
        {"name": "light", "driver": "bh1750", "bus": "i2c0", "address": 0x23, "interval_ms": 5000},
        {"name": "pth", "driver": "bme280", "bus": "i2c0", "address": 0x76, "interval_ms": 5000},
        {"name": "fake", "driver": "synthetic", "seed": 3, "period_s": 60, "interval_ms": 1000},
    ],
}


def make(board=BOARD):
    bus = Bus()
    bus.chips[0x44] = SHTChip()
    bus.chips[0x23] = LuxChip()
    clk = Clock(0)
    slept = []
    m = SensorManager(board, buses={"i2c0": bus}, clock=clk, sleep_ms=slept.append)
    return m, bus, clk, slept


def test_quantity_table_matches_driver_classes():
    classes = {"sht4x": SHT4x, "bh1750": BH1750, "analog_lux": AnalogLux, "mq135": MQ135,
               "bme280": BME280, "ds18b20": DS18B20, "pzem004t": PZEM004T, "synthetic": Synthetic}
    assert sorted(QUANTITIES) == sorted(classes)
    for k in classes:
        assert QUANTITIES[k] == classes[k].QUANTITIES, k


def test_good_read_and_schedule():
    m, bus, clk, slept = make()
    assert m.due(0) == ["sht", "light", "pth", "fake"]
    r = m.read("sht", 0)
    assert r["valid"] is True and r["error"] is None
    assert abs(r["temperature"] - 25.0) < 1e-9 and abs(r["relative_humidity"] - 56.500954) < 1e-5
    assert slept == [9]  # the SHT4x high-repeatability conversion time
    assert bus.chips[0x44].cmds == [b"\xfd"]
    assert "sht" not in m.due(1999) and "sht" in m.due(2000)
    assert m.read("light", 0) == {"lux": 400.0, "valid": True, "error": None}
    assert m.next_due_ms(0) == 0  # pth and fake are still due
    m.read("pth", 0)
    m.read("fake", 0)
    assert m.next_due_ms(0) == 1000
    assert m.due(1000) == ["fake"]


def test_crc_mismatch_gives_invalid_reading_and_counter():
    m, bus, clk, _ = make()
    bus.chips[0x44].frame = BAD_CRC
    r = m.read("sht", 0)
    assert r == {"temperature": None, "relative_humidity": None, "valid": False, "error": "crc"}
    assert m.errors("sht") == {"crc": 1, "io": 0, "timeout": 0, "invalid": 0}
    bus.chips[0x44].frame = GOOD
    assert m.read("sht", 2000)["valid"]
    assert m.sensors["sht"].failures == 0 and m.sensors["sht"].reads == 2


def test_missing_chip_gives_invalid_and_io_counter_then_recovers():
    m, bus, clk, _ = make()
    # no BME280 attached: construction fails (calibration read NACKed) -> io, retried next time
    r = m.read("pth", 0)
    assert r["valid"] is False and r["error"] == "io" and r["pressure"] is None
    assert m.read("pth", 5000)["error"] == "io"
    assert m.errors("pth")["io"] == 2 and m.sensors["pth"].failures == 2
    # unplug the SHT4x after a good read
    assert m.read("sht", 0)["valid"]
    del bus.chips[0x44]
    assert m.read("sht", 2000)["error"] == "io"
    assert m.errors("sht")["io"] == 1
    bus.chips[0x44] = SHTChip()
    assert m.read("sht", 4000)["valid"]


def test_timeout_invalid_and_unexpected_exceptions_never_escape():
    m, bus, clk, _ = make()

    class Flaky:
        def __init__(self, exc):
            self.exc = exc

        def start(self):
            return 0

        def collect(self):
            raise self.exc

    s = m.sensors["sht"]
    for exc, kind in ((OSError(110), "timeout"), (ValueError("x"), "invalid"),
                      (ZeroDivisionError(), "invalid"), (OSError(5), "io")):
        s.dev = Flaky(exc)
        r = m.read("sht", 0)
        assert r["valid"] is False and r["error"] == kind
    assert m.errors("sht") == {"crc": 0, "io": 1, "timeout": 1, "invalid": 2}


def test_error_kind_mapping():
    from fieldlink.drivers.base import CRCError, InvalidReading, NotReady
    assert error_kind(CRCError()) == "crc"
    assert error_kind(InvalidReading()) == "invalid"
    assert error_kind(NotReady()) == "not_ready"
    assert error_kind(OSError(110)) == "timeout"
    assert error_kind(OSError(19)) == "io"


def test_synthetic_toggle_at_run_time_and_disable():
    m, bus, clk, _ = make()
    assert m.read("fake", 0)["valid"]
    m.driver("fake").enabled = False
    r = m.read("fake", 1000)
    assert r["valid"] is False and r["error"] == "io" and r["lux"] is None
    m.driver("fake").enabled = True
    assert m.read("fake", 2000)["valid"]
    m.enable("fake", False)
    assert "fake" not in m.due(100000)
    assert m.read("fake", 100000)["error"] == "disabled"
    assert m.errors("fake")["io"] == 1  # disabled is not an error


def test_set_interval_and_unknown_bus():
    board = {"i2c": [], "sensors": [{"name": "t", "driver": "sht4x", "bus": "i2c1"},
                                    {"name": "x", "driver": "nonexistent"}]}
    m = SensorManager(board, clock=Clock(0), sleep_ms=lambda ms: None)
    assert m.order == ["t"]  # unknown drivers are skipped, never fatal
    assert m.read("t", 0)["error"] == "io"  # i2c1 is not defined on this board
    m.set_interval("t", 250, now_ms=0)
    assert m.due(249) == [] and m.due(250) == ["t"]
    raises(KeyError, m.read, "nope")


def test_mq135_warmup_is_invalid_without_error_count():
    class ADC:
        def read_uv(self):
            return 1000000

    clk = Clock(0)
    board = {"sensors": [{"name": "air", "driver": "mq135", "pin": 4, "warmup_s": 30, "r0": 40000.0}]}
    m = SensorManager(board, clock=clk, adc_factory=lambda pin: ADC(), sleep_ms=lambda ms: None)
    r = m.read("air", 0)
    assert r == {"co2": None, "valid": False, "error": "not_ready"}
    assert m.errors("air") == {"crc": 0, "io": 0, "timeout": 0, "invalid": 0}
    clk.t = 30000
    r = m.read("air")
    assert r["valid"] and abs(r["co2"] - 116.6020682) < 1e-6


def test_start_collect_split_for_async_use():
    m, bus, clk, slept = make()
    assert m.start("sht", 0) == 9
    assert bus.chips[0x44].cmds == [b"\xfd"]
    r = m.collect("sht", 9)
    assert r["valid"] and slept == []
    out = m.read_due(10)
    assert sorted(out) == ["fake", "light", "pth"]


def test_onewire_uart_and_adc_drivers_from_config():
    import chips_onewire
    import chips_uart
    import onewire

    class UART:
        def __init__(self, dev):
            self.dev = dev
            self.rx = b""

        def write(self, data):
            self.rx += self.dev.uart_rx(bytes(data))

        def any(self):
            return len(self.rx)

        def read(self, n=None):
            r, self.rx = self.rx, b""
            return r

        def readinto(self, buf):
            n = min(len(buf), len(self.rx))
            for i in range(n):
                buf[i] = self.rx[i]
            self.rx = self.rx[n:]
            return n

    class ADC:
        def read_uv(self):
            return 1000000

    onewire.detach(40)
    probe = onewire.attach(40, chips_onewire.DS18B20(serial=0x42, temperature=-3.25))
    meter = chips_uart.PZEM004T(address=1, voltage=229.9, current=0.5, power=100.0)
    board = {"sensors": [
        {"name": "probe", "driver": "ds18b20", "pin": 40, "rom": "".join("%02x" % b for b in probe.rom),
         "resolution": 11},
        {"name": "mains", "driver": "pzem004t", "bus": "uart1", "address": 1, "timeout_ms": 5},
        {"name": "lightsens", "driver": "analog_lux", "pin": 5},
    ]}
    slept = []
    m = SensorManager(board, buses={"uart1": UART(meter)}, clock=Clock(0), sleep_ms=slept.append,
                      adc_factory=lambda pin: ADC(), onewire_factory=onewire.OneWire)
    assert m.read("probe", 0) == {"temperature": -3.25, "valid": True, "error": None}
    assert slept == [375]  # 11-bit conversion time
    assert probe.resolution == 11
    r = m.read("mains", 0)
    assert r["valid"] and r["voltage"] == 229.9 and r["current"] == 0.5 and r["power"] == 100.0
    assert abs(m.read("lightsens", 0)["lux"] - 40.0) < 1e-6
    probe.corrupt_reads = 1
    assert m.read("probe", 1000)["error"] == "crc"
    meter.silent = True
    assert m.read("mains", 1000)["error"] == "timeout"
    onewire.detach(40)
    assert m.read("probe", 2000)["error"] == "io"
    assert m.errors("probe") == {"crc": 1, "io": 1, "timeout": 0, "invalid": 0}
    assert m.errors("mains")["timeout"] == 1
