# Sensor manager with its default machine factories on the virtual board: ADC sources.
import simboard

from fieldlink.node.sensors import SensorManager


def test_default_adc_factory_reads_the_sim_source():
    simboard.reset()
    volts = [1.0]
    simboard.attach_adc(5, lambda: volts[0])
    simboard.attach_adc(4, 1.0)
    board = {"sensors": [{"name": "light", "driver": "analog_lux", "pin": 5},
                         {"name": "air", "driver": "mq135", "pin": 4, "warmup_s": 0, "r0": 40000.0}]}
    m = SensorManager(board, clock=lambda: 0, sleep_ms=lambda ms: None)
    r = m.read("light", 0)
    assert r["valid"] and abs(r["lux"] - 40.0) < 0.01  # 1.0 V / 10 kOhm / 2.5 uA/lx
    volts[0] = 3.3  # beyond the 11 dB full scale: clipped -> invalid
    r = m.read("light", 0)
    assert r["error"] == "invalid" and m.errors("light")["invalid"] == 1
    r = m.read("air", 0)
    assert r["valid"] and abs(r["co2"] - 116.6020682) < 0.01  # Rs = 40 kOhm = R0 -> ppm = a
    simboard.reset()
