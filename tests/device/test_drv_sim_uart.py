# PZEM-004T through the virtual board's machine.UART (default factory) and the fake meter.
import simboard

import chips_uart
from fieldlink.node.sensors import SensorManager


def test_pzem_through_machine_uart():
    simboard.reset()
    meter = chips_uart.PZEM004T(address=0x01, voltage=228.7, current=3.21, power=700.4, energy=98765,
                                frequency=50.1, power_factor=0.93)
    simboard.attach_uart(1, meter)
    board = {"sensors": [{"name": "mains", "driver": "pzem004t", "bus": "uart1", "tx": 17, "rx": 18,
                          "address": 1, "timeout_ms": 20}]}
    m = SensorManager(board, clock=lambda: 0, sleep_ms=lambda ms: None)
    r = m.read("mains", 0)
    assert r == {"voltage": 228.7, "current": 3.21, "power": 700.4, "energy": 98765, "frequency": 50.1,
                 "power_factor": 0.93, "alarm": 0, "valid": True, "error": None}
    assert meter.requests == [bytes((0x01, 0x04, 0x00, 0x00, 0x00, 0x0A, 0x70, 0x0D))]
    meter.corrupt_replies = 1
    assert m.read("mains", 1000)["error"] == "crc"
    simboard.detach_uart(1)
    assert m.read("mains", 2000)["error"] == "timeout"
    assert m.errors("mains") == {"crc": 1, "io": 0, "timeout": 1, "invalid": 0}
    simboard.reset()
