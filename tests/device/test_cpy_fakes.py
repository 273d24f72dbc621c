# The CircuitPython fakes (device/sim/circuitpython): CircuitPython's API and error behaviour on the
# virtual board's fake chips, pins, ADC sources and air. Each test runs inside cpyenv.circuitpython(), so
# the fakes are on the path only there (CPython and the MicroPython unix port alike).
import airlink
import chips
import simboard
from devtest import raises, rmtree, tmpdir

import cpyenv

A = b"\x02\x00\x00\x00\x00\x0a"
B = b"\x02\x00\x00\x00\x00\x0b"


def _fresh():
    simboard.reset()
    b = simboard.new_board(mac=A, boot=False)
    simboard.select(b)
    return b


def test_i2c_needs_the_lock_and_reads_the_fake_chip():
    with cpyenv.circuitpython():
        _fresh()
        import board
        import busio
        sht = chips.SHT4x(temperature=23.4, humidity=41.0, timing=False)
        simboard.attach_i2c(0, 0x44, sht)
        i2c = busio.I2C(board.SCL, board.SDA)
        e = raises(RuntimeError, i2c.writeto, 0x44, b"\xfd")
        assert "lock" in str(e)
        assert i2c.try_lock()
        assert not i2c.try_lock()  # already held
        assert i2c.scan() == [0x44]
        assert i2c.probe(0x44) and not i2c.probe(0x45)
        # only buffer[start:end] goes out: 0xFD, the high-repeatability measurement
        i2c.writeto(0x44, bytearray(b"\x00\xfd\x00"), start=1, end=2)
        assert sht.writes[-1] == b"\xfd"
        buf = bytearray(8)
        i2c.readfrom_into(0x44, buf, start=1, end=7)
        assert buf[0] == 0 and buf[7] == 0
        raw_t = (buf[1] << 8) | buf[2]
        assert raw_t == chips.SHT4x.raw_temperature(23.4)
        assert buf[3] == chips.crc8(buf[1:3])
        # NACK: OSError(19) ENODEV, what the Espressif port raises for ESP_FAIL
        e = raises(OSError, i2c.writeto, 0x45, b"\x01")
        assert e.args[0] == 19
        # a zero-length write is an address probe: acknowledged, the chip sees no data
        n = len(sht.writes)
        i2c.writeto(0x44, b"")
        assert len(sht.writes) == n
        raises(ValueError, i2c.readfrom_into, 0x44, bytearray(0))
        i2c.unlock()
        i2c.deinit()
        raises(ValueError, i2c.scan)


def test_i2c_write_then_read_is_a_repeated_start():
    with cpyenv.circuitpython():
        _fresh()
        import board
        import busio
        bme = chips.BME280(timing=False)
        simboard.attach_i2c(0, 0x76, bme)
        i2c = busio.I2C(board.SCL, board.SDA, frequency=400000)
        assert i2c.try_lock()
        out = bytearray(1)
        out[0] = 0xD0
        chip_id = bytearray(1)
        i2c.writeto_then_readfrom(0x76, out, chip_id)
        assert chip_id[0] == 0x60
        i2c.unlock()


def test_i2c_controllers_and_pin_claims():
    with cpyenv.circuitpython():
        _fresh()
        import board
        import busio
        a = busio.I2C(board.SCL, board.SDA)
        e = raises(ValueError, busio.I2C, board.SCL, board.D5)
        assert "in use" in str(e)
        bb = busio.I2C(board.D5, board.D6)  # second controller of the S3 -> simboard bus 1
        raises(ValueError, busio.I2C, board.D9, board.D10)  # only two controllers
        chip = chips.BH1750(lux=50, timing=False)
        simboard.attach_i2c(1, 0x23, chip)
        assert bb.try_lock() and bb.scan() == [0x23]
        assert a.try_lock() and a.scan() == []
        a.deinit()
        c = busio.I2C(board.D9, board.D10)  # controller 0 is free again
        assert c.try_lock() and c.scan() == []
        c.deinit()
        assert board.I2C() is board.I2C()  # the board's singleton, on the freed SCL/SDA pins
        raises(ValueError, busio.I2C, board.D9, board.D10)  # both controllers taken again


def test_board_pins_follow_the_board_config():
    with cpyenv.circuitpython():
        b = _fresh()
        import board
        assert board.board_id == "adafruit_feather_esp32s3_4mbflash_2mbpsram"
        assert board.SCL.number == 4 and board.SDA.number == 3 and board.LED.number == 13
        raises(AttributeError, getattr, board, "GP0")
        b.config = {"circuitpython": {"board_id": "my_board", "pins": {"SCL": 9, "SDA": 8, "D5": 5}}}
        assert board.board_id == "my_board" and board.SCL.number == 9
        raises(AttributeError, getattr, board, "LED")


def test_digital_out_in_and_watchers():
    with cpyenv.circuitpython():
        _fresh()
        import board
        import digitalio
        seen = []
        simboard.watch_pin(5, lambda n, v: seen.append((n, v)))
        d = digitalio.DigitalInOut(board.D5)
        assert d.direction is digitalio.Direction.INPUT
        raises(AttributeError, setattr, d, "value", True)
        d.switch_to_output(value=True)  # created high, in one step: one edge only
        assert simboard.pin_level(5) == 1 and seen == [(5, 1)]
        d.value = False
        assert simboard.pin_level(5) == 0 and seen[-1] == (5, 0)
        raises(ValueError, digitalio.DigitalInOut, board.D5)
        btn = digitalio.DigitalInOut(board.BUTTON)
        btn.switch_to_input(pull=digitalio.Pull.UP)
        assert btn.value is True and btn.pull is digitalio.Pull.UP
        simboard.set_pin(0, 0)
        assert btn.value is False
        d.deinit()
        raises(ValueError, getattr, d, "value")
        digitalio.DigitalInOut(board.D5).deinit()  # released


def test_analog_in_scales_millivolts_to_16_bits():
    with cpyenv.circuitpython():
        _fresh()
        import analogio
        import board
        simboard.attach_adc(18, 1.65)  # A0 = GPIO18
        a = analogio.AnalogIn(board.A0)
        assert a.reference_voltage == 3.3
        assert a.value == 1650 * 65535 // 3300  # half the reference
        simboard.attach_adc(18, 5.0)  # saturates near 3.1 V
        assert a.value == 3100 * 65535 // 3300
        raises(ValueError, analogio.AnalogIn, board.TX)  # GPIO39 has no ADC


def _set_first_two(obj, value):
    obj[0:2] = value


def test_nvm_persists_in_the_board_directory():
    d = tmpdir("cpynvm")
    try:
        with cpyenv.circuitpython():
            simboard.reset()
            simboard.select(simboard.new_board(mac=A, dir=d, boot=False))
            import microcontroller
            nvm = microcontroller.nvm
            assert len(nvm) == 8192 and nvm[0] == 0xFF
            nvm[0:4] = b"fl01"
            nvm[10] = 7
            raises(ValueError, _set_first_two, nvm, b"abc")
            raises(ValueError, nvm.__setitem__, 1, 256)
            raises(IndexError, nvm.__getitem__, 8192)
            simboard.reset()
            simboard.select(simboard.new_board(mac=A, dir=d, boot=False))  # a new process on that board
            assert nvm[0:4] == bytearray(b"fl01") and nvm[10] == 7
    finally:
        simboard.reset()
        rmtree(d)


def test_micropython_only_modules_are_not_importable():
    with cpyenv.circuitpython():
        for name in ("machine", "network", "esp32", "onewire", "aioespnow"):
            e = raises(ImportError, __import__, name)
            assert name in str(e)
    import machine  # noqa: F401 - and back outside the block
    assert hasattr(machine, "Pin")


def _cp_node(air, mac):
    b = simboard.new_board(mac=mac, boot=False)
    simboard.use_loopback(air, b)
    simboard.select(b)
    import espnow
    return b, espnow.ESPNow()


def test_espnow_send_read_peers_and_counters():
    with cpyenv.circuitpython():
        simboard.reset()
        import espidf
        import espnow
        air = airlink.LoopbackMedium(1)
        ba, ea = _cp_node(air, A)
        bb, eb = _cp_node(air, B)
        simboard.select(ba)
        raises(RuntimeError, espnow.ESPNow)  # singleton per board
        e = raises(espidf.IDFError, ea.send, b"x", espnow.Peer(B))
        assert "NOT_FOUND" in str(e)
        peer = espnow.Peer(B)
        ea.peers.append(peer)
        raises(espidf.IDFError, ea.peers.append, espnow.Peer(B))  # EXIST
        assert ea.send(b"hello", peer) is None
        assert ea.send_success == 1 and ea.send_failure == 0
        ea.send(b"to all")  # peer=None: every registered peer
        simboard.select(bb)
        assert len(eb) == 2 * 13 + 5 + 6 and eb
        p = eb.read()
        assert p.mac == A and p.msg == b"hello" and -100 < p.rssi < 0
        mac, msg, rssi, t = p  # a namedtuple on CircuitPython
        assert msg == b"hello"
        assert eb.read().msg == b"to all" and eb.read() is None and not eb
        raises(ValueError, eb.send, b"x" * 251)
        simboard.select(ba)
        ea.peers.remove(peer)
        assert len(ea.peers) == 0
        ea.peers.append(espnow.Peer(b"\x02\x00\x00\x00\x00\x0c"))  # nobody there
        ea.send(b"lost")
        assert ea.send_failure == 1
        ea.deinit()
        espnow.ESPNow().deinit()  # released: a new one can be made
        simboard.select(bb)
        eb.deinit()
        simboard.reset()


def test_espnow_ring_buffer_overflow_counts_read_failure():
    with cpyenv.circuitpython():
        simboard.reset()
        import espnow
        air = airlink.LoopbackMedium(1)
        ba, ea = _cp_node(air, A)
        bb = simboard.new_board(mac=B, boot=False)
        simboard.use_loopback(air, bb)
        simboard.select(bb)
        eb = espnow.ESPNow(buffer_size=100)
        simboard.select(ba)
        ea.peers.append(espnow.Peer(B))
        for _ in range(3):
            ea.send(b"y" * 40)  # 53 bytes each in the ring: only the first fits in 100
        simboard.select(bb)
        assert eb.read_success == 1 and eb.read_failure == 2
        assert eb.read().msg == b"y" * 40 and eb.read() is None
        simboard.reset()


def test_espnow_talks_to_the_micropython_espnow_on_the_same_air():
    import espnow as mp_espnow  # the MicroPython virtual board's module (device/sim)
    import network
    simboard.reset()
    air = airlink.LoopbackMedium(2)
    bm = simboard.new_board(mac=B, boot=False)
    simboard.use_loopback(air, bm)
    simboard.select(bm)
    network.WLAN(network.STA_IF).active(True)
    em = mp_espnow.ESPNow()
    em.active(True)
    em.add_peer(A)
    with cpyenv.circuitpython():
        import espnow
        ba, ec = _cp_node(air, A)
        ec.peers.append(espnow.Peer(B))
        ec.send(b"from circuitpython")
        simboard.select(bm)
        assert em.recv(0) == [A, b"from circuitpython"]
        assert em.send(A, b"from micropython")
        simboard.select(ba)
        assert ec.read().msg == b"from micropython"
        ec.deinit()
    simboard.reset()


def test_channel_follows_start_ap_and_peers_on_other_channels_fail():
    with cpyenv.circuitpython():
        simboard.reset()
        import espidf
        import espnow
        import wifi
        air = airlink.LoopbackMedium(1)
        ba, ea = _cp_node(air, A)
        bb, eb = _cp_node(air, B)
        simboard.select(ba)
        ea.peers.append(espnow.Peer(B, channel=6))
        e = raises(espidf.IDFError, ea.send, b"x")
        assert "CHAN" in str(e)
        wifi.radio.start_ap("fl", channel=6)
        wifi.radio.stop_ap()
        assert ba.channel == 6  # stays after stop_ap
        ea.send(b"on 6")
        simboard.select(bb)
        assert eb.read() is None  # B listens on channel 1
        wifi.radio.start_ap("fl", channel=6)
        simboard.select(ba)
        ea.send(b"on 6 again")
        simboard.select(bb)
        assert eb.read().msg == b"on 6 again"
        wifi.radio.enabled = False
        simboard.select(ba)
        ea.send(b"radio off")
        simboard.select(bb)
        assert eb.read() is None
        raises(RuntimeError, wifi.radio.connect, "any")
        wifi.radio.enabled = True
        e = raises(OSError, wifi.radio.connect, "any")  # no access points in the sim
        assert type(e).__name__ == "ConnectionError" and "No network" in str(e)
        simboard.reset()


def test_deep_sleep_ends_the_run_and_wakes_with_a_time_alarm():
    d = tmpdir("cpysleep")
    try:
        with cpyenv.circuitpython():
            simboard.reset()
            simboard.select(simboard.new_board(mac=A, dir=d))
            import alarm
            import microcontroller
            import time
            assert alarm.wake_alarm is None
            assert microcontroller.cpu.reset_reason is microcontroller.ResetReason.POWER_ON
            alarm.sleep_memory[0:3] = b"abc"
            raises(ValueError, alarm.time.TimeAlarm, monotonic_time=time.monotonic() - 10)
            ta = alarm.time.TimeAlarm(monotonic_time=time.monotonic() + 60)
            e = raises(SystemExit, alarm.exit_and_deep_sleep_until_alarms, ta)
            assert e.args[0] == simboard.EXIT_DEEPSLEEP
            simboard.reset()
            simboard.select(simboard.new_board(dir=d))  # the launcher restarts the board
            pend_ms = simboard.board().state  # the pending entry was consumed by boot()
            assert "pending" not in pend_ms
            assert microcontroller.cpu.reset_reason is microcontroller.ResetReason.DEEP_SLEEP_ALARM
            assert isinstance(alarm.wake_alarm, alarm.time.TimeAlarm)
            assert alarm.sleep_memory[0:3] == bytearray(b"abc")  # RTC memory survives deep sleep
    finally:
        simboard.reset()
        rmtree(d)


def test_light_sleep_returns_the_earliest_alarm():
    with cpyenv.circuitpython():
        _fresh()
        import alarm
        import time
        assert alarm.light_sleep_until_alarms() is None
        t = time.monotonic()
        late = alarm.time.TimeAlarm(monotonic_time=t + 5)
        soon = alarm.time.TimeAlarm(monotonic_time=t + 0.02)
        assert alarm.light_sleep_until_alarms(late, soon) is soon
        assert time.monotonic() >= t + 0.02


def test_watchdog_raise_mode_and_supervisor_ticks():
    with cpyenv.circuitpython():
        _fresh()
        import microcontroller
        import supervisor
        import watchdog
        w = microcontroller.watchdog
        raises(ValueError, setattr, w, "mode", watchdog.WatchDogMode.RAISE)  # timeout first
        w.timeout = 0.01
        w.mode = watchdog.WatchDogMode.RAISE
        w.feed()
        t0 = supervisor.ticks_ms()
        while (supervisor.ticks_ms() - t0) & ((1 << 29) - 1) < 30:
            pass
        raises(watchdog.WatchDogTimeout, w.feed)
        w.deinit()
        assert 0 <= supervisor.ticks_ms() < (1 << 29)


def test_resets_end_the_run_and_set_the_next_reset_reason():
    d = tmpdir("cpyreset")
    try:
        with cpyenv.circuitpython():
            simboard.reset()
            simboard.select(simboard.new_board(mac=A, dir=d))
            import microcontroller
            import supervisor
            import watchdog
            e = raises(SystemExit, microcontroller.reset)
            assert e.args[0] == simboard.EXIT_HARD_RESET
            simboard.reset()
            simboard.select(simboard.new_board(dir=d))
            assert microcontroller.cpu.reset_reason is microcontroller.ResetReason.SOFTWARE
            w = microcontroller.watchdog
            w.timeout = 0.01
            w.mode = watchdog.WatchDogMode.RESET
            raises(RuntimeError, w.deinit)  # not once in RESET mode
            t0 = supervisor.ticks_ms()
            while supervisor.ticks_ms() - t0 < 30:
                pass
            e = raises(SystemExit, w.feed)  # late: the hardware resets
            assert e.args[0] == simboard.EXIT_WDT_RESET
            simboard.reset()
            simboard.select(simboard.new_board(dir=d))
            assert microcontroller.cpu.reset_reason is microcontroller.ResetReason.WATCHDOG
            assert supervisor.runtime.run_reason == supervisor.RunReason.STARTUP
            e = raises(SystemExit, supervisor.reload)
            assert e.args[0] == simboard.EXIT_SOFT_RESET
    finally:
        simboard.reset()
        rmtree(d)
