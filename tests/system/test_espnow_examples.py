"""ESP-NOW programs in the style of MicroPython's own examples (docs/library/espnow.rst) run unchanged as
/main.py on two virtual boards (separate micropython processes on the UDP air), from their own flash;
what they print is what the port's documentation says they print on hardware."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fieldlink_host.virtual import AirHub, BoardFlash, VirtualBoard, start_air

EXAMPLES = Path(__file__).resolve().parent / "espnow_examples"
A = "02:00:00:00:00:0a"
B = "02:00:00:00:00:0b"
A_REPR = repr(bytes.fromhex(A.replace(":", "")))  # how print(mac) shows the sender: b'\x02\x00\x00\x00\x00\n'


@pytest.fixture
def air() -> Iterator[AirHub]:
    hub = start_air(seed=5)
    yield hub
    hub.stop()


Flash = Callable[[str, str, str], VirtualBoard]


@pytest.fixture
def flash(tmp_path: Path, air: AirHub) -> Iterator[Flash]:
    """flash(name, mac, program): a board with the example as its /main.py (flashed, like `mpremote cp
    main.py`), not started; every board made here is stopped at teardown."""
    made: list[VirtualBoard] = []

    def make(name: str, mac: str, program: str) -> VirtualBoard:
        d = tmp_path / name
        BoardFlash(d).write({"main.py": (EXAMPLES / program).read_bytes()})
        made.append(VirtualBoard(d, mac=mac, air=air, chips=False))
        return made[-1]

    yield make
    stop(*made)


def stop(*boards: VirtualBoard) -> None:
    """Stop the boards; their output is complete only after this (the reader drains to EOF)."""
    for b in boards:
        b.stop()


def test_docs_sender_and_receiver(flash: Flash) -> None:
    rx = flash("rx", B, "receiver.py").start()
    tx = flash("tx", A, "sender.py")
    rx.wait_for("^listening$", timeout=30)
    tx.start()
    tx.wait_for("^sent ", timeout=60)
    rx.wait_for(re.escape(f"{A_REPR} b'end'"), timeout=60)
    stop(tx, rx)
    got = [ln for ln in rx.lines if ln.startswith(A_REPR)]
    assert got == [f"{A_REPR} b'Starting...'"] + [f"{A_REPR} {(str(i) * 20).encode()!r}" for i in range(100)] + \
        [f"{A_REPR} b'end'"]
    # (tx_pkts, tx_responses, tx_failures, rx_packets, rx_dropped): 102 sends, all acknowledged
    assert "sent (102, 102, 0, 0, 0)" in tx.lines


def test_irq_callback_runs_while_busy_sleeping_and_in_asyncio(flash: Flash) -> None:
    rx = flash("rx", B, "irq_receiver.py")
    tx = flash("tx", A, "irq_sender.py").start()
    tx.wait_for("^waiting$", timeout=30)
    rx.start()
    rx.wait_for("^asyncio:", timeout=120)
    tx.wait_for("^done$", timeout=30)
    stop(tx, rx)
    # the docs' callback prints print(mac, msg) from irecv(): the peers_table key and a bytearray
    shown = [ln for ln in rx.lines if ln.startswith(A_REPR)]
    assert shown == [f"{A_REPR} bytearray(b'msg {i}')" for i in range(9)]
    assert [ln for ln in rx.lines if ":" in ln and not ln.startswith("b'")][-3:] == \
        ["busy loop: 3", "sleep_ms: 6", "asyncio: 9"]
    assert "stats (3, 3, 0, 9, 0)" in rx.lines
    assert [ln for ln in tx.lines if ln.startswith("peer says")] == \
        ["peer says b'ready'", "peer says b'next'", "peer says b'next'"]


def test_asyncio_echo_server_and_client(flash: Flash) -> None:
    srv = flash("srv", B, "echo_server.py").start()
    cli = flash("cli", A, "echo_client.py")
    srv.wait_for("^serving$", timeout=30)
    cli.start()
    cli.wait_for("^echoes ", timeout=90)
    stop(cli, srv)
    assert "echoes 20" in cli.lines
    assert [ln for ln in srv.lines if ln.startswith("Echo:")] == [f"Echo: bytearray(b'ping {i}')" for i in range(20)]


def test_channel_change_and_memory_over_many_sends(flash: Flash) -> None:
    rx = flash("rx", B, "channel_listener.py").start()
    tx = flash("tx", A, "channel_hop.py")
    rx.wait_for("^listening on 6$", timeout=30)
    tx.start()
    tx.wait_for("^stats ", timeout=60)
    line = rx.wait_for("^received ", timeout=60)
    stop(tx, rx)
    # channel 1 -> no MAC-level ack from a board on channel 6; after the change the frame is acknowledged
    assert tx.lines[-3:] == ["channel 1 False", "channel 6 True", "stats 503"]
    m = re.match(r"received (\d+) heap growth (-?\d+)$", line)
    assert m, line
    # 501 frames sent on channel 6 (hello! + 500 bulk, sync=False); the receiver may drop some when its
    # 528-byte ring buffer is full, exactly as on hardware, but keeps a flat heap with irecv()
    assert 100 < int(m.group(1)) <= 501
    assert int(m.group(2)) < 4096


def test_espnow_v2_board_option_over_the_air(flash: Flash) -> None:
    def board(name: str, mac: str, program: str, v2: bool) -> VirtualBoard:
        vb = flash(name, mac, program)
        vb.board = {"name": name, "chip": "esp32s3", "role": "node", "espnow_v2": v2}
        return vb

    rx2 = board("rx2", B, "v2_receiver.py", True).start()
    rx1 = board("rx1", "02:00:00:00:00:0c", "v2_receiver.py", False).start()
    tx = board("tx", A, "v2_sender.py", True)
    rx2.wait_for("^MAX_DATA_LEN", timeout=30)
    rx1.wait_for("^MAX_DATA_LEN", timeout=30)
    tx.start()
    tx.wait_for("^too long", timeout=30)
    rx2.wait_for("^got ", timeout=30)
    rx1.wait_for("^got ", timeout=30)
    stop(tx, rx1, rx2)
    # default rxbuf 2 * (14 + 1470) (v2) and 2 * (14 + 250) (v1), as modespnow.c computes it
    assert tx.lines[-4:] == ["MAX_DATA_LEN 1470 2968", "sent True", "sent True", "too long (-12390, 'ESP_ERR_ESPNOW_ARG')"]
    assert "MAX_DATA_LEN 1470 2968" in rx2.lines and "got 1470 True" in rx2.lines
    # the v1 board acks at MAC level and keeps the first 250 bytes
    assert "MAX_DATA_LEN 250 528" in rx1.lines and "got 250 True" in rx1.lines
