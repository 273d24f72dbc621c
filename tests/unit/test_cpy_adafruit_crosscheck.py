"""Cross-check: Adafruit's own CircuitPython drivers (PyPI adafruit-circuitpython-sht4x, -bh1750, -bme280
with adafruit-circuitpython-busdevice) and fieldlink's drivers read the SAME fake chip on the SAME fake
busio.I2C (device/sim/circuitpython) and must agree within the chip's resolution. fieldlink's drivers
reach busio through the CircuitPython port (fieldlink.port.cpy.I2C). Adafruit's drivers, which nobody
here wrote, also check the fake chips and the fake busio. CPython only (the Adafruit side)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "device"))
import chips  # noqa: E402
import cpyenv  # noqa: E402
import simboard  # noqa: E402

SHT_LSB_T = 175 / 65535  # SHT4x: one raw count of temperature
SHT_LSB_RH = 125 / 65535


@pytest.fixture
def cp() -> Iterator[dict[str, Any]]:
    """CircuitPython environment with one board; yields the busio.I2C on board.SCL/SDA and the port I2C."""
    with cpyenv.circuitpython():
        simboard.reset()
        simboard.select(simboard.new_board(mac=b"\x02\x00\x00\x00\x00\x01", boot=False))
        for name in [m for m in sys.modules if m.startswith("adafruit_")]:
            del sys.modules[name]  # bind Adafruit's modules to the fakes of this environment
        import board
        from fieldlink.port.cpy import I2C as PortI2C

        bus = board.I2C()
        try:
            yield {"bus": bus, "port": PortI2C(bus)}
        finally:
            bus.deinit()
            simboard.reset()


@pytest.mark.parametrize("t,rh", [(23.4, 41.0), (-12.3, 5.5), (85.0, 97.2), (0.0, 0.0)])
def test_sht4x(cp: dict[str, Any], t: float, rh: float) -> None:
    import adafruit_sht4x
    from fieldlink.drivers.sht4x import SHT4x

    chip = chips.SHT4x(temperature=t, humidity=rh)  # with the chip's real timing: both drivers must wait
    simboard.attach_i2c(0, 0x44, chip)
    ada = adafruit_sht4x.SHT4x(cp["bus"])
    ours = SHT4x(cp["port"])
    at, arh = ada.measurements
    ot, orh = ours.measurements
    assert abs(at - ot) <= SHT_LSB_T and abs(arh - orh) <= SHT_LSB_RH
    assert abs(ot - t) <= SHT_LSB_T and abs(orh - rh) <= SHT_LSB_RH
    assert ada.serial_number == ours.serial_number == chip.serial
    assert chip.writes.count(b"\xfd") == 2  # both asked for the high-repeatability measurement


def test_sht4x_crc_error_seen_by_both(cp: dict[str, Any]) -> None:
    import adafruit_sht4x
    from fieldlink.drivers.base import CRCError
    from fieldlink.drivers.sht4x import SHT4x

    chip = chips.SHT4x(temperature=20.0, humidity=50.0, timing=False)
    simboard.attach_i2c(0, 0x44, chip)
    ada = adafruit_sht4x.SHT4x(cp["bus"])
    ours = SHT4x(cp["port"])
    chip.fail("crc")
    with pytest.raises(RuntimeError, match="CRC"):
        _ = ada.measurements
    with pytest.raises(CRCError):
        _ = ours.measurements


@pytest.mark.parametrize("lux", [0.0, 1.0, 321.0, 1000.4, 27000.0])
def test_bh1750(cp: dict[str, Any], lux: float) -> None:
    import adafruit_bh1750
    from fieldlink.drivers.bh1750 import BH1750

    chip = chips.BH1750(lux=lux, timing=False)
    simboard.attach_i2c(0, 0x23, chip)
    ours = BH1750(cp["port"])  # one-time H-resolution mode: 1 lx per count / 1.2
    o = ours.lux
    ada = adafruit_bh1750.BH1750(cp["bus"])  # continuous H-resolution mode 2: 0.5 lx per count / 1.2
    a = ada.lux
    assert chip.mode == "H2" and chip.continuous  # what Adafruit's driver selected
    res = 1 / 1.2  # the coarser of the two modes
    assert abs(a - o) <= res
    assert abs(o - lux) <= res and abs(a - lux) <= res / 2 + 1e-9


@pytest.mark.parametrize("t,p,rh", [(18.5, 987.6, 63.0), (-5.0, 1030.2, 20.0), (31.7, 850.0, 90.5)])
def test_bme280(cp: dict[str, Any], t: float, p: float, rh: float) -> None:
    from adafruit_bme280 import basic
    from fieldlink.drivers.bme280 import BME280

    chip = chips.BME280(temperature=t, pressure=p, humidity=rh)
    simboard.attach_i2c(0, 0x76, chip)
    ours = BME280(cp["port"])  # forced mode, integer compensation (Bosch's 32/64-bit formulas)
    ot, op, orh = ours.measurements
    ada = basic.Adafruit_BME280_I2C(cp["bus"], address=0x76)  # normal mode, float compensation
    at, ap, arh = ada.temperature, ada.pressure, ada.relative_humidity
    # resolutions of the compensated outputs: 0.01 degC, 1/256 Pa (integer) ~ float, 1/1024 %RH
    assert abs(at - ot) <= 0.01
    assert abs(ap - op) <= 0.01  # hPa
    assert abs(arh - orh) <= 0.01
    # and both near what the fake was told (its inverse compensation quantises the raw ADC values)
    assert abs(ot - t) <= 0.05 and abs(op - p) <= 0.05 and abs(orh - rh) <= 0.1


def test_missing_chip_is_enodev_for_both(cp: dict[str, Any]) -> None:
    import adafruit_sht4x
    from fieldlink.drivers.sht4x import SHT4x

    with pytest.raises(ValueError, match="No I2C device"):
        adafruit_sht4x.SHT4x(cp["bus"])  # adafruit_bus_device's probe
    with pytest.raises(OSError) as e:
        _ = SHT4x(cp["port"]).measurements
    assert e.value.args[0] == 19
    assert cp["bus"].try_lock()  # the port released the lock after the failed transfer
    cp["bus"].unlock()
