# fieldlink sensor drivers: one chip per module, the bus is passed in (micropython-lib / Adafruit style).
# Every driver raises only these exceptions (plus OSError from the bus); the sensor manager
# (fieldlink.node.sensors) turns them into an invalid reading and a per-sensor counter.
#   OSError(ENODEV/EIO/...)  bus error, missing chip, NACK        -> errors["io"]
#   OSError(ETIMEDOUT)       no answer in time                    -> errors["timeout"]
#   CRCError                 checksum mismatch on received data   -> errors["crc"]
#   InvalidReading           data received but implausible        -> errors["invalid"]
#   NotReady                 sensor warming up / disabled         -> invalid, no counter

from fieldlink.runtime.clock import sleep_ms  # noqa: F401  (drivers' blocking sleep: the one clock)


class CRCError(ValueError):
    pass


class InvalidReading(ValueError):
    pass


class NotReady(Exception):
    pass
