# Scenario sources and scenario files for the virtual board.
import machine
import scenario
import simboard
from devtest import raises, tmpdir


def test_constant_and_daynight():
    assert scenario.Constant(3.5).at(123) == 3.5
    dn = scenario.DayNight(20, 5, period_s=100)
    assert abs(dn.at(0) - 20) < 1e-9
    assert abs(dn.at(25) - 25) < 1e-9
    assert abs(dn.at(75) - 15) < 1e-9
    noisy1 = scenario.DayNight(20, 0, noise=1.0, seed=4)
    noisy2 = scenario.DayNight(20, 0, noise=1.0, seed=4)
    a = [noisy1.at(0) for _ in range(50)]
    assert a == [noisy2.at(0) for _ in range(50)]
    assert max(a) - min(a) > 0.5 and abs(sum(a) / 50 - 20) < 0.6
    raises(ValueError, scenario.DayNight, 1, 1, 0)


def test_csv_step_interpolation_loop_and_hold():
    d = tmpdir("csv")
    with open(d + "/lux.csv", "w") as f:
        f.write("t,lux,other\n0,10,1\n10,20,1\n30,5,1\n")
    loop = scenario.Csv(d + "/lux.csv", "lux")
    assert [loop.at(t) for t in (0, 9.9, 10, 29, 30, 39)] == [10, 10, 20, 20, 5, 5]
    assert loop.at(50) == 10 and loop.at(61) == 20  # period = 30 + last step 20 = 50 s
    hold = scenario.Csv(d + "/lux.csv", "lux", loop=False)
    assert hold.at(1000) == 5
    raises(ValueError, scenario.Csv, d + "/lux.csv", "nope")
    with open(d + "/bad.csv", "w") as f:
        f.write("t,v\n0,1\n5,x\n")
    raises(ValueError, scenario.Csv, d + "/bad.csv", "v")


def test_clock_drives_sources():
    scenario.set_clock(fixed=25)
    assert abs(scenario.DayNight(0, 1, period_s=100)() - 1) < 1e-9
    scenario.set_clock()


def test_load_scenario_and_attach_board_sensors():
    simboard.reset()
    scenario.set_clock(fixed=0)
    desc = {"seed": 1, "boards": {"*": {"sht.temperature": 19.5, "air.volts": 0.4},
                                  "node-1": {"sht.humidity": {"type": "constant", "value": 70}}},
            "air": {"defaults": {"loss": 0.1}}}
    scen = scenario.load(desc)
    config = {"name": "node-1", "sensors": [
        {"name": "sht", "driver": "sht4x", "bus": "i2c0", "address": 0x44},
        {"name": "lux", "driver": "bh1750", "bus": "i2c1", "address": 0x23},
        {"name": "air", "driver": "mq135", "pin": 4}]}
    made = scenario.attach_board_sensors(config, scen, "node-1")
    assert made["sht"].temperature() == 19.5 and made["sht"].humidity() == 70
    assert machine.I2C(0).scan() == [0x44]
    assert machine.I2C(1).scan() == [0x23]
    adc = machine.ADC(machine.Pin(4), atten=machine.ADC.ATTN_11DB)
    assert abs(adc.read_uv() - 400000) < 1000
    raises(ValueError, scenario.load, {"bogus": 1})
    raises(ValueError, scenario.load, {"boards": {"x": {"nodot": 1}}})
    raises(ValueError, scenario.load, {"boards": {"x": {"a.b": {"type": "zigzag"}}}})
    bad = scenario.load({"boards": {"*": {"sht.colour": 3}}})
    raises(ValueError, scenario.attach_board_sensors, config, bad)
    scenario.set_clock()
    simboard.reset()
