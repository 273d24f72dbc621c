"""What each sensor driver measures, as rule inputs ``<sensor>.<quantity>``, with units.

The quantity names come from the device's own table (``fieldlink.node.sensors.QUANTITIES``), so the compiler
and the node always agree on the reading names; this module only adds the unit of each quantity and the
default sampling interval used to size time windows. Documented in docs/rules.md ("Inputs").
"""

from __future__ import annotations

from fieldlink.node.sensors import DEFAULT_INTERVAL_MS
from fieldlink.node.sensors import QUANTITIES as _DEVICE_QUANTITIES

#: unit of every quantity a driver reports (fixed point: 3 decimals, saturates at +-1073741.823)
UNITS: dict[str, str] = {
    "temperature": "degC",
    "relative_humidity": "%",
    "lux": "lx",
    "co2": "ppm",
    "pressure": "hPa",
    "voltage": "V",
    "current": "A",
    "power": "W",
    "energy": "Wh",
    "frequency": "Hz",
    "power_factor": "",
    "alarm": "0/1",
}

#: driver -> quantities, e.g. "sht4x" -> ("temperature", "relative_humidity")
QUANTITIES: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in _DEVICE_QUANTITIES.items()}

#: sampling interval assumed when a board's sensor has no interval_ms (ms)
DEFAULT_SENSOR_INTERVAL_MS: int = int(DEFAULT_INTERVAL_MS)


def quantities(driver: str) -> tuple[str, ...]:
    return QUANTITIES.get(driver, ())


def unit(quantity: str) -> str:
    return UNITS.get(quantity, "")
