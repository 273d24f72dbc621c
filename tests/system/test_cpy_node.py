"""A CircuitPython node on the virtual air: the Adafruit Feather ESP32-S3 board's CIRCUITPY tree (built by
`fieldlink build --runtime circuitpython`, copied by `fieldlink deploy --drive`) runs on the MicroPython
unix port with the CircuitPython fakes (device/sim/circuitpython: no machine/network/esp32, fieldlink only
from the drive's lib/) and joins a MicroPython gateway (sim-gateway) over the UDP air hub: pairing,
telemetry from the fake chips through busio/analogio, the bundled rules switching a relay through
digitalio, and a relay command from the host."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fieldlink_host.circuitpy import build_tree, deploy_drive
from fieldlink_host.farm import Farm, mac_hex, node_mac
from fieldlink_host.paths import micropython_binary
from fieldlink_host.uplink import UplinkClient
from fieldlink_host.virtual import VirtualBoard

BOARD = "adafruit-feather-esp32s3"
RULES = """\
board: adafruit-feather-esp32s3
rules:
  - name: vent
    when: sht.temperature > 28
    then:
      - on: fan
    else:
      - off: fan
"""


def _pump(client: UplinkClient, msgs: list[dict[str, Any]], until: Callable[[], bool], timeout: float,
          what: str, board: VirtualBoard) -> None:
    import time
    end = time.monotonic() + timeout
    while not until():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}; host got {[m.get('t') for m in msgs]}; "
                                 f"node log:\n" + "\n".join(board.lines[-40:]))
        m = client.recv(0.2)
        if m is not None:
            msgs.append(m)


@pytest.mark.slow  # a gateway, a node and the air hub for ~20 s
def test_circuitpython_node_joins_a_micropython_gateway(tmp_path: Path) -> None:
    assert micropython_binary()
    rules = tmp_path / "vent.rules.yaml"
    rules.write_text(RULES)
    tree = build_tree(BOARD, tmp_path / "tree", rules=[rules], revision="test")
    drive = tmp_path / "drive"
    drive.mkdir()
    (drive / "boot_out.txt").write_text("Adafruit CircuitPython 9.2.1; Adafruit Feather ESP32S3\n")
    deploy_drive(drive, tree)
    mac = node_mac(7)
    me = mac_hex(mac)
    scenario = {"boards": {"*": {"sht.temperature": 31.5, "sht.humidity": 44.0, "light.lux": 500.0,
                                 "lux.volts": 0.8}}}
    with Farm(nodes=0, workdir=tmp_path / "farm", seed=4) as farm:
        assert farm.client is not None and farm.air is not None
        client = farm.client
        node = VirtualBoard(drive, board=BOARD, mac=mac, air=farm.air, scenario=scenario, name="cpnode",
                            auto_restart=False, runtime="circuitpython")
        node.start()
        try:
            msgs: list[dict[str, Any]] = []

            def of(t: str) -> list[dict[str, Any]]:
                return [m for m in msgs if m.get("t") == t and m.get("from") == me]

            readings: dict[str, list[dict[str, Any]]] = {}

            def seen_all() -> bool:
                readings.clear()
                for m in of("tel"):
                    for entry in m["d"]["r"]:  # [sensor, {quantity: value}, ...]
                        readings.setdefault(entry[0], []).append(entry[1])
                return len(of("tel")) >= 2 and {"sht", "light", "lux"} <= set(readings)

            _pump(client, msgs, seen_all, 60, "telemetry from sht, light and lux", node)
            assert of("join"), msgs
            # SHT4x and BH1750 through busio.I2C, the TEMT6000 through analogio.AnalogIn (0.8 V -> 32 lx)
            assert all(abs(v["temperature"] - 31.5) < 0.01 for v in readings["sht"]), readings
            assert all(abs(v["relative_humidity"] - 44.0) < 0.01 for v in readings["sht"]), readings
            assert all(abs(v["lux"] - 500.0) <= 1 for v in readings["light"]), readings
            assert all(abs(v["lux"] - 32.0) < 0.1 for v in readings["lux"]), readings
            # the bundled rule (31.5 > 28) switched the fan on through digitalio
            _pump(client, msgs, lambda: any(e["d"].get("ev") == "relay" and e["d"]["d"].get("reason") == "rule"
                                            for e in of("evt")), 30, "the rule's relay event", node)
            st = client.node_command(me, "status", timeout=20)["st"]
            assert st["relays"] == {"fan": True, "pump": False}
            # a relay command from the host goes down over the air and is obeyed
            r = client.node_command(me, "relay", name="pump", op="on", timeout=20)
            assert r == {"ok": True, "name": "pump", "on": True}
            _pump(client, msgs, lambda: any(e["d"].get("ev") == "relay" and e["d"]["d"].get("reason") == "command"
                                            for e in of("evt")), 30, "the command's relay event", node)
            st = client.node_command(me, "status", timeout=20)["st"]
            assert st["relays"] == {"fan": True, "pump": True}
            text = "\n".join(node.lines)
            assert "cpboard: running code.py" in text
            assert "Traceback" not in text, text[-3000:]
            assert node.running
        finally:
            node.stop()
