# The virtual espnow/network against the ESP32 port's own code paths (ports/esp32/modespnow.c,
# modules/espnow.py, network_wlan.c) and ESP-IDF's esp_now_* error codes: every error path of send,
# add_peer, del_peer, get_peer, mod_peer, peers_table, config, irq, stats; ESP-NOW v1/v2 sizes; rates
# and WLAN protocol constants. Expected values are the port's, written out here by hand.
import airlink
import espnow
import network
import simboard
from devtest import raises

A = b"\x02\x00\x00\x00\x00\x0a"
B = b"\x02\x00\x00\x00\x00\x0b"
BCAST = b"\xff" * 6
NOT_INIT = (-12389, "ESP_ERR_ESPNOW_NOT_INIT")  # ESP_ERR_ESPNOW_BASE (0x3000 + 100) + 1
ARG = (-12390, "ESP_ERR_ESPNOW_ARG")
FULL = (-12392, "ESP_ERR_ESPNOW_FULL")
NOT_FOUND = (-12393, "ESP_ERR_ESPNOW_NOT_FOUND")
EXIST = (-12395, "ESP_ERR_ESPNOW_EXIST")


def _err(fn, *args, **kw):
    e = raises(OSError, fn, *args, **kw)
    return (e.args[0], e.args[1]) if len(e.args) > 1 else (e.args[0],)


def _msg(exc_type, fn, *args, **kw):
    return str(raises(exc_type, fn, *args, **kw))


def _node(air, mac, v2=False, wlan=True):
    b = simboard.new_board(mac=mac)
    b.espnow_v2 = v2
    simboard.use_loopback(air, b)
    simboard.select(b)
    w = network.WLAN(network.STA_IF)
    if wlan:
        w.active(True)
    e = espnow.ESPNow()
    e.active(True)
    return e


def _pair(v2_a=False, v2_b=False):
    simboard.reset()
    air = airlink.LoopbackMedium(3)
    return _node(air, A, v2_a), _node(air, B, v2_b)


def test_constants():
    assert (espnow.MAX_DATA_LEN, espnow.KEY_LEN, espnow.ADDR_LEN) == (250, 16, 6)
    assert (espnow.MAX_TOTAL_PEER_NUM, espnow.MAX_ENCRYPT_PEER_NUM) == (20, 6)
    # wifi_phy_rate_t: 1M_L 0x00, 2M_L 0x01, 5M_L 0x02, 11M_L 0x03, 24M 0x09, 12M 0x0A, 6M 0x0B, 54M 0x0C,
    # LORA_250K 0x29, LORA_500K 0x2A
    rates = (espnow.RATE_1M, espnow.RATE_2M, espnow.RATE_5M, espnow.RATE_11M, espnow.RATE_24M,
             espnow.RATE_12M, espnow.RATE_6M, espnow.RATE_54M, espnow.RATE_LORA_250K, espnow.RATE_LORA_500K)
    assert rates == (0, 1, 2, 3, 9, 10, 11, 12, 41, 42)
    assert network.WLAN.PROTOCOL_LR == 8 and network.WLAN.PROTOCOL_DEFAULT == 7  # 11b|11g|11n


def test_send_errors_as_esp_now_send_returns_them():
    a, _b = _pair()
    a.add_peer(B)
    assert _err(a.send, B, b"x" * 251) == ARG  # over ESP_NOW_MAX_DATA_LEN: OSError, not ValueError
    assert _err(a.send, B, b"") == ARG
    assert _err(a.send, BCAST, b"x") == NOT_FOUND  # broadcast needs its peer entry too
    assert _msg(ValueError, a.send, b"\x01\x02", b"x") == "invalid buffer length"
    raises(TypeError, a.send, B, 12)  # no buffer protocol
    assert a.send(B, "text") is True and a.send(B, bytearray(b"ba")) is True
    assert a.send(B, memoryview(b"mv"), False) is True
    a.add_peer(BCAST)
    # send(msg) / send(None, msg): every peer except broadcast and multicast addresses
    assert a.send(b"to-all") is True
    assert a.send(None, b"to-all-2") is True
    assert a.stats()[0] == 5


def test_peer_errors_and_defaults():
    a, _b = _pair()
    a.add_peer(B)
    assert a.get_peer(B) == (B, b"\x00" * 16, 0, 0, False)  # lmk always 16 bytes, channel 0 = current
    assert _err(a.add_peer, B) == EXIST
    assert _err(a.get_peer, b"\x02" * 6) == NOT_FOUND
    assert _err(a.del_peer, b"\x02" * 6) == NOT_FOUND
    assert _err(a.mod_peer, b"\x02" * 6, channel=3) == NOT_FOUND
    assert _msg(ValueError, a.add_peer, b"\x01") == "invalid buffer length"
    assert _msg(ValueError, a.add_peer, b"\x02" * 6, b"short") == "invalid buffer length"
    assert _err(a.add_peer, b"\x02" * 6, channel=15) == ARG
    assert _err(a.add_peer, b"\x02" * 6, ifidx=2) == ARG
    assert _err(a.add_peer, BCAST, b"k" * 16) == ARG  # no encrypted broadcast peer
    # a true lmk turns encryption on; a false one (b"") off; encrypt= overrides; no lmk = zero key
    a.mod_peer(B, b"k" * 16)
    assert a.get_peer(B) == (B, b"k" * 16, 0, 0, True)
    a.mod_peer(B, b"")
    assert a.get_peer(B)[4] is False
    a.mod_peer(B, encrypt=True)
    assert a.get_peer(B) == (B, b"k" * 16, 0, 0, True)
    a.add_peer(b"\x02\x00\x00\x00\x00\x0c", encrypt=True)
    assert a.peer_count() == (2, 2)
    assert a.get_peers()[1] == (b"\x02\x00\x00\x00\x00\x0c", b"\x00" * 16, 0, 0, True)
    for i in range(4):
        a.add_peer(bytes([2, 0, 0, 0, 1, i]), b"k" * 16)
    assert _err(a.add_peer, b"\x02\x00\x00\x00\x02\x00", b"k" * 16) == FULL  # 7th encrypted peer
    a.add_peer(b"\x02\x00\x00\x00\x02\x00")  # unencrypted still fits


def test_not_initialised_paths():
    a, _b = _pair()
    a.add_peer(B)
    assert a.send(B, b"x") is True
    a.active(False)
    # stats() and peers_table work without init; deinit forgets peers and sets tx_pkts = tx_responses
    assert a.stats() == (1, 1, 0, 0, 0)
    assert isinstance(a.peers_table, dict)
    for fn, args in ((a.send, (B, b"x")), (a.add_peer, (B,)), (a.del_peer, (B,)), (a.get_peer, (B,)),
                     (a.mod_peer, (B,)), (a.get_peers, ()), (a.peer_count, ()), (a.any, ()),
                     (a.recv, (0,)), (a.irecv, (0,)), (a.set_pmk, (b"p" * 16,))):
        assert _err(fn, *args) == NOT_INIT
    assert _msg(ValueError, a.add_peer, b"\x01") == "invalid buffer length"  # checked before init
    a.active(True)
    assert a.peer_count() == (0, 0)


def test_config_and_irq_arguments():
    simboard.reset()
    air = airlink.LoopbackMedium(1)
    e = _node(air, A, wlan=False)
    assert e.config("rxbuf") == 528 and e.config("timeout_ms") == 300000
    assert _msg(ValueError, e.config, "rate") == "unknown config param"  # rate is write-only
    raises(TypeError, e.config, pmk=b"p" * 16)  # not a config option (set_pmk() is)
    assert _err(e.config, rate=espnow.RATE_LORA_250K) == (2,)  # no WLAN interface started: ENOENT
    w = network.WLAN(network.STA_IF)
    w.active(True)
    w.config(channel=6, protocol=network.WLAN.PROTOCOL_LR)
    assert w.config("protocol") == 8
    assert e.config(rate=espnow.RATE_LORA_250K) is None
    raises(RuntimeError, w.config, protocol=0x40)  # esp_wifi_set_protocol(): ESP_ERR_INVALID_ARG
    assert _msg(ValueError, e.irq, 5) == "invalid handler"
    e.irq(None)
    e.config(rxbuf=2000)
    assert e.config("rxbuf") == 2000
    assert _msg(ValueError, e.set_pmk, b"short") == "invalid buffer length"


def test_receive_buffers_like_the_port():
    a, b = _pair()
    a.add_peer(B)
    a.send(B, b"first")
    a.send(B, b"second")
    r1 = b.irecv(0)
    r2 = b.irecv(0)
    assert r1 is r2 and bytes(r2[1]) == b"second"  # irecv() reuses one buffer (alloc-free)
    assert b.irecv(0) == (None, None) and b.recv(0) == (None, None)
    a.send(B, b"with rssi")
    data = [None, bytearray(espnow.MAX_DATA_LEN), None, None]
    assert b.recvinto(data, 0) == 9 and data[0] == A and bytes(data[1]) == b"with rssi"
    assert -127 <= data[2] <= 0 and data[3] == b.peers_table[A][1]
    a.send(B, b"too long for 4")
    a.send(B, b"x")
    assert _msg(ValueError, b.recvinto, [None, memoryview(bytearray(4))], 0) == "ESPNow.recv(): buffer error"
    assert b.any() is False  # the ring buffer was reset
    assert b.recvinto([None, bytearray(10)], 0) == 0


def test_espnow_v2_sizes_and_a_v1_receiver():
    a, b = _pair(v2_a=True, v2_b=False)
    a.add_peer(B)
    assert a.send(B, b"v" * 1470) is True
    assert _err(a.send, B, b"v" * 1471) == ARG
    # ESP-IDF: a v1 device receives a v2 frame over 250 bytes truncated to 250 (or not at all); the sim
    # truncates
    assert b.recv(0) == [A, b"v" * 250]
    b.add_peer(A)
    assert _err(b.send, A, b"w" * 251) == ARG  # the v1 board still sends at most 250
    assert b.send(A, b"w" * 250) is True
    assert a.recv(0) == [B, b"w" * 250]
    assert a.config("rxbuf") == 2 * (14 + 1470)


def test_irq_callback_is_scheduled_with_the_espnow_object():
    a, b = _pair()
    a.add_peer(B)
    got = []

    def recv_cb(e):
        while True:
            mac, msg = e.irecv(0)
            if mac is None:
                return
            got.append((e is b, bytes(mac), bytes(msg)))

    b.irq(recv_cb)
    a.send(B, b"one")
    a.send(B, b"two")
    n = 0
    while len(got) < 2 and n < 10000:  # scheduled callbacks run between bytecodes (MicroPython)
        n += 1
    assert got == [(True, A, b"one"), (True, A, b"two")]
    b.irq(None)
    a.send(B, b"three")
    for _ in range(100):
        pass
    assert len(got) == 2 and b.recv(0) == [A, b"three"]
