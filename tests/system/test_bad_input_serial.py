"""Garbage on the gateway's serial line (random bytes, malformed msgpack, unknown message types,
oversize frames, bad commands): the gateway keeps running, counts every kind, and still answers."""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fieldlink.codec.serialframe import encode_frame  # noqa: E402
from fieldlink_host.uplink import UplinkClient, encode_message  # noqa: E402
from test_farm_support import spawn_gateway_pty  # noqa: E402


def test_serial_garbage_is_counted_and_gateway_keeps_running(tmp_path: Path) -> None:
    gw = spawn_gateway_pty(tmp_path, nodes=2, ring=128)
    try:
        with UplinkClient(gw.port) as c:
            c.wait_for(lambda m: m["t"] == "boot", 10)
            before = c.status()["uplink"]
            rng = random.Random(7)
            for _ in range(20):
                c.write_raw(bytes(rng.getrandbits(8) for _ in range(500)))
            c.write_raw(b"\x00")
            c.write_raw(encode_frame(b"\xc1"))  # reserved msgpack byte
            c.write_raw(encode_frame(b"\xdc\xff\xff"))  # array16 claiming 65535 items, no data
            c.write_raw(encode_frame(b"\x92\x01"))  # truncated
            c.write_raw(encode_message({"t": "launch_rockets"}))
            c.write_raw(encode_message({"x": 1}))  # map without "t"
            c.write_raw(b"\x01" * 20000 + b"\x00")  # oversize frame
            c.write_raw(encode_message({"t": "cmd", "id": "nine", "op": "ping"}))
            c.write_raw(encode_message({"t": "cmd", "id": 5, "op": "relay", "to": "not-a-mac"}))
            time.sleep(1.0)
            assert c.ping()["pong"] == 1
            st = c.status()
            up = st["uplink"]
            assert up["bad_msgpack"] - before["bad_msgpack"] >= 3
            assert up["unknown_type"] - before["unknown_type"] >= 1
            assert up["bad_msg"] - before["bad_msg"] >= 1
            assert up["oversize"] - before["oversize"] >= 1
            assert (up["crc_errors"] + up["framing_errors"]) - (before["crc_errors"] + before["framing_errors"]) >= 10
            assert st["gw"]["bad_cmd"] >= 2
            # telemetry still flows
            c.wait_for(lambda m: m["t"] == "tel", 10)
        assert gw.alive(), gw.log()
    finally:
        gw.stop()
