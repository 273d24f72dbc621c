# The I2C drivers against the virtual board's fake chips (device/sim/chips.py) through machine.I2C,
# built by the sensor manager from a board dict like boards/sim-node.toml.
import simboard

import chips
from fieldlink.node.sensors import SensorManager

BOARD = {
    "i2c": [{"id": 0, "scl": 9, "sda": 8, "freq": 400000}],
    "sensors": [
        {"name": "sht", "driver": "sht4x", "bus": "i2c0", "address": 0x44, "interval_ms": 2000},
        {"name": "light", "driver": "bh1750", "bus": "i2c0", "address": 0x23, "interval_ms": 5000},
        {"name": "pth", "driver": "bme280", "bus": "i2c0", "address": 0x76, "interval_ms": 5000},
    ],
}


def setup():
    simboard.reset()
    sht = chips.SHT4x(temperature=23.4, humidity=41.0, timing=False)
    lux = chips.BH1750(lux=321.0, timing=False)
    bme = chips.BME280(temperature=18.5, pressure=987.6, humidity=63.0, timing=False)
    simboard.attach_i2c(0, 0x44, sht)
    simboard.attach_i2c(0, 0x23, lux)
    simboard.attach_i2c(0, 0x76, bme)
    return SensorManager(BOARD, clock=lambda: 0), sht, lux, bme


def test_sim_chips_read_through_machine_i2c():
    m, sht, lux, bme = setup()
    r = m.read("sht", 0)
    assert r["valid"], r
    # 16-bit quantisation: 175 / 65535 degC and 125 / 65535 %RH per LSB
    assert abs(r["temperature"] - 23.4) < 0.01 and abs(r["relative_humidity"] - 41.0) < 0.01
    assert sht.writes[-1] == b"\xfd"
    r = m.read("light", 0)
    assert r["valid"] and abs(r["lux"] - 321.0) < 1.0
    r = m.read("pth", 0)
    assert r["valid"], r
    # the fake inverts the compensation with its calibration; allow the raw-value quantisation
    assert abs(r["temperature"] - 18.5) < 0.05 and abs(r["pressure"] - 987.6) < 0.05
    assert abs(r["relative_humidity"] - 63.0) < 0.1
    simboard.reset()


def test_sim_failures_become_counters():
    m, sht, lux, bme = setup()
    sht.fail("crc")
    assert m.read("sht", 0)["error"] == "crc"
    sht.fail("nack")
    assert m.read("sht", 2000)["error"] == "io"
    sht.fail(None)
    assert m.read("sht", 4000)["valid"]
    simboard.detach_i2c(0, 0x23)
    assert m.read("light", 0)["error"] == "io"
    assert m.errors("sht") == {"crc": 1, "io": 1, "timeout": 0, "invalid": 0}
    assert m.errors("light")["io"] == 1
    simboard.reset()
