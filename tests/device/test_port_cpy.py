# The CircuitPython hardware port (fieldlink.port.cpy) on the CircuitPython virtual board: the objects it
# hands to relays, sensors and the link behave like their MicroPython counterparts. Both runtimes.
import sys

import airlink
import chips
import simboard
from devtest import raises

import cpyenv

A = b"\x02\x00\x00\x00\x00\x0a"
B = b"\x02\x00\x00\x00\x00\x0b"
BCAST = b"\xff" * 6
CFG = {"name": "cp", "role": "node", "runtime": "circuitpython", "options": {"channel": 1},
       "circuitpython": {"board_id": "t", "pins": {"SCL": 4, "SDA": 3, "D5": 5, "A0": 18, "TX": 39, "RX": 38}}}


def _port():
    for m in [k for k in sys.modules if k.startswith("fieldlink.port")]:
        del sys.modules[m]  # bind to the fakes of this block
    from fieldlink.port.active import port
    return port()


def _board(mac=A, air=None):
    b = simboard.new_board(mac=mac, config=CFG, boot=False)
    if air is not None:
        simboard.use_loopback(air, b)
    simboard.select(b)
    return b


def test_active_port_is_chosen_by_what_imports():
    with cpyenv.circuitpython():
        simboard.reset()
        _board()
        assert _port().NAME == "circuitpython"
    assert _port().NAME == "micropython"  # machine importable again outside the block
    for m in [k for k in sys.modules if k.startswith("fieldlink.port")]:
        del sys.modules[m]


def test_out_pin_adc_and_i2c():
    with cpyenv.circuitpython():
        simboard.reset()
        _board()
        p = _port()
        levels = []
        simboard.watch_pin(5, lambda n, v: levels.append(v))
        out = p.out_pin("D5", 1)  # created high: exactly one edge, no glitch through low
        assert simboard.pin_level(5) == 1 and levels == [1]
        out.value(0)
        assert out.value() == 0 and simboard.pin_level(5) == 0
        out.on()
        assert simboard.pin_level(5) == 1
        raises(ValueError, p.out_pin, "D99", 0)
        simboard.attach_adc(18, 1.65)
        a = p.adc("A0")
        assert a.read_u16() == 1650 * 65535 // 3300
        assert abs(a.read_uv() - 1650000) < 100  # one count is 50 uV
        simboard.attach_i2c(0, 0x23, chips.BH1750(lux=100, timing=False))
        i2c = p.i2c({"id": 0, "scl": "SCL", "sda": "SDA", "freq": 400000})
        assert i2c.scan() == [0x23]
        assert i2c.bus.try_lock()  # the port released the lock after its transfer
        i2c.bus.unlock()
        e = raises(OSError, i2c.writeto, 0x44, b"\x01")
        assert e.args[0] == 19
        simboard.reset()


def test_i2c_register_access_on_the_bme280():
    with cpyenv.circuitpython():
        simboard.reset()
        _board()
        p = _port()
        simboard.attach_i2c(0, 0x76, chips.BME280(timing=False))
        i2c = p.i2c({"id": 0, "scl": "SCL", "sda": "SDA"})
        assert i2c.readfrom_mem(0x76, 0xD0, 1) == b"\x60"
        i2c.writeto_mem(0x76, 0xF5, b"\x00")
        buf = bytearray(1)
        i2c.readfrom_mem_into(0x76, 0xF5, buf)
        assert buf[0] == 0
        raises(ValueError, i2c.readfrom_mem, 0x76, 0xD0, 1, addrsize=12)
        simboard.reset()


class _Echo:
    def uart_rx(self, data):
        return b"re:" + data


def test_uart_is_non_blocking():
    with cpyenv.circuitpython():
        simboard.reset()
        _board()
        p = _port()
        u = p.uart(1, {"tx": "TX", "rx": "RX"})
        assert u.any() == 0 and u.read() is None  # timeout 0: no waiting
        simboard.attach_uart(1, _Echo())
        assert u.write(b"hi") == 2
        assert u.any() == 5
        buf = bytearray(5)
        assert u.readinto(buf) == 5 and bytes(buf) == b"re:hi"
        simboard.reset()


def test_radio_esp_adapter_speaks_micropythons_espnow_api():
    with cpyenv.circuitpython():
        simboard.reset()
        air = airlink.LoopbackMedium(1)
        bb = _board(B, air)
        p = _port()
        wb, eb, mb = p.radio(CFG)
        ba = _board(A, air)
        wa, ea, ma = p.radio(CFG)
        assert ma == A and wa.config("mac") == A and wa.config("channel") == 1
        ea.add_peer(BCAST)
        e = raises(OSError, ea.add_peer, BCAST)
        assert "EXIST" in str(e)
        assert ea.send(BCAST, b"beacon", True) is True
        raises(OSError, ea.send, B, b"x", True)  # not a peer: NOT_FOUND, like MicroPython
        ea.add_peer(B, b"0123456789abcdef", 0, 0, True)
        assert ea.peer_count() == (2, 1)
        simboard.select(bb)
        eb.add_peer(A, b"0123456789abcdef", 0, 0, True)
        assert eb.any()
        assert eb.irecv(0) == [A, b"beacon"]
        assert eb.irecv(0) == [None, None] and not eb.any()
        assert A in eb.peers_table and -100 < eb.peers_table[A][0] < 0
        simboard.select(ba)
        ea.send(B, b"secret", True)  # encrypted with the shared LMK
        simboard.select(bb)
        assert eb.irecv(0) == [A, b"secret"]
        # the link scans channels with wlan.config(channel=...): A moves, B no longer hears it
        simboard.select(ba)
        wa.config(channel=6)
        assert ba.channel == 6 and wa.config("channel") == 6
        ea.send(BCAST, b"on 6", True)
        simboard.select(bb)
        assert eb.irecv(0) == [None, None]
        simboard.select(ba)
        ea.del_peer(B)
        raises(OSError, ea.del_peer, B)
        assert ea.peer_count() == (1, 0)
        simboard.reset()


def test_rtc_memory_wdt_and_sleep():
    with cpyenv.circuitpython():
        simboard.reset()
        _board()
        p = _port()
        r = p.rtc()
        assert r.memory() == b""
        r.memory(b'{"boot": 3}')
        assert r.memory() == b'{"boot": 3}'
        raises(ValueError, r.memory, b"x" * 5000)
        assert not p.woke_from_deepsleep()
        w = p.wdt(30000)
        w.feed()
        import microcontroller
        assert microcontroller.watchdog.timeout == 30.0
        assert p.reset_fn() is microcontroller.reset
        e = raises(SystemExit, p.deepsleep_fn(), 1000)
        assert e.args[0] == simboard.EXIT_DEEPSLEEP
        assert simboard.board().state["pending"]["sleep_ms"] in (999, 1000, 1001)
        simboard.reset()


def test_clock_uses_supervisor_ticks_where_time_has_none():
    name = "fieldlink.runtime.clock"
    saved = sys.modules.pop(name, None)
    try:
        with cpyenv.circuitpython():
            __import__(name)
            c = sys.modules[name]
            import time
            if hasattr(time, "ticks_ms"):  # the unix port: the fake time keeps MicroPython's ticks
                assert c.ticks_ms is time.ticks_ms and c.PERIOD >= 1 << 30
            else:  # CPython here stands for CircuitPython: supervisor.ticks_ms, 2**29 wrap
                import supervisor
                assert c.PERIOD == 1 << 29 and c.ticks_ms is supervisor.ticks_ms
            p = c.PERIOD
            assert c.ticks_add(p - 1, 1) == 0
            assert c.ticks_diff(c.ticks_add(p - 10, 30), p - 10) == 30
            assert c.ticks_diff(p - 10, c.ticks_add(p - 10, 30)) == -30
            assert 0 <= c.ticks_ms() < p
            sys.modules.pop(name, None)
    finally:
        if saved is not None:
            sys.modules[name] = saved


def test_a_rebuilt_role_gets_the_same_hardware_objects():
    # CircuitPython claims pins until deinit() and ESPNow is a singleton: when fieldlink.main.run rebuilds
    # the relays, sensors and radio after a failure, the port hands out what it already made
    with cpyenv.circuitpython():
        simboard.reset()
        _board()
        p = _port()
        o1 = p.out_pin("D5", 1)
        o2 = p.out_pin("D5", 0)  # e.g. all relays OFF again
        assert o1 is o2 and simboard.pin_level(5) == 0
        bus = {"id": 0, "scl": "SCL", "sda": "SDA"}
        assert p.i2c(bus) is p.i2c(bus)
        assert p.adc("A0") is p.adc("A0")
        assert p.uart(1, {"tx": "TX", "rx": "RX"}) is p.uart(1, {"tx": "TX", "rx": "RX"})
        r1 = p.radio(CFG)
        assert p.radio(CFG) is r1
        other = _board(B)  # another board in the same process gets its own
        assert p.radio(CFG)[2] == B and other.mac == B
        simboard.reset()
