"""OTA system test from the host CLI: a gateway and 5 virtual nodes provisioned like flashed boards
(the `fieldlink image` filesystem: loader, app bundle in slot a, fl/active; bundles from `fieldlink build
--owner-key`), an app update made with `fieldlink ota make` and rolled out with `fieldlink ota push
--to all --canary 20` (both real subprocesses on the gateway's serial port), one node power-cycled in
the middle of its transfer. Every node ends on the new app (active slot b, confirmed, counter stored),
the cycled node resumed its transfer instead of starting over, and the CLI's table lists 5 updated
nodes with exit status 0."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path
from typing import Any

import pytest
from fieldlink_host.build import load_bundle
from fieldlink_host.farm import GATEWAY_MAC, default_scenario, mac_hex, node_mac
from fieldlink_host.image import filesystem_files
from fieldlink_host.uplink import UplinkClient
from fieldlink_host.virtual import AirHub, BoardFlash, VirtualBoard, prepare_board_dir, start_air

ROOT = Path(__file__).resolve().parents[2]
NODES = 5
pytestmark = pytest.mark.slow


class UplinkCable:
    """The gateway's USB serial port as a host program sees it. The gateway opens the slave of pty A
    (FIELDLINK_UPLINK); ``plug()`` makes a fresh pty B whose slave path a host program (the CLI, or a
    library client) opens with pyserial, and a thread copies bytes between the two masters. Unplugged,
    what the gateway writes is dropped, as a USB CDC port nobody reads."""

    def __init__(self) -> None:
        self.a_master, self.a_slave = os.openpty()
        tty.setraw(self.a_master)
        tty.setraw(self.a_slave)
        self.gateway_path = os.ttyname(self.a_slave)
        self.b: tuple[int, int] | None = None
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="uplink-cable")
        self.thread.start()

    def plug(self) -> str:
        m, s = os.openpty()
        tty.setraw(m)
        tty.setraw(s)
        os.set_blocking(m, False)
        with self.lock:
            self.b = (m, s)
        return os.ttyname(s)

    def unplug(self) -> None:
        with self.lock:
            b, self.b = self.b, None
        if b is not None:
            for fd in b:
                os.close(fd)

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        view = memoryview(data)
        end = time.monotonic() + 2.0
        while view and time.monotonic() < end:
            _, ok, _ = select.select([], [fd], [], 0.2)
            if not ok:
                continue
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                continue
            except OSError:
                return

    def _run(self) -> None:
        while not self.done.is_set():
            with self.lock:
                b = self.b
                fds = [self.a_master] + ([b[0]] if b else [])
                try:
                    ready, _, _ = select.select(fds, [], [], 0.05)
                except (OSError, ValueError):
                    continue
                for fd in ready:
                    try:
                        data = os.read(fd, 65536)
                    except OSError:
                        continue
                    if fd == self.a_master:
                        if b is not None:
                            self._write(b[0], data)
                    else:
                        self._write(self.a_master, data)
            time.sleep(0)

    def close(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)
        self.unplug()
        os.close(self.a_master)
        os.close(self.a_slave)


def _cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "fieldlink_host", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"fieldlink {' '.join(args)}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _provision(d: Path, board: str, bundle: Path) -> None:
    """The board's flash as `fieldlink image` + `fieldlink flash` leave it: loader files, the bundle in
    slot a and fl/active (docs/deploy.md "Image and flash")."""
    prepare_board_dir(d, board)  # the partition table (the vfs size the filesystem is made for)
    flash = BoardFlash(d)
    flash.write(filesystem_files(load_bundle(bundle)))
    files = flash.files()
    assert files["fl/active"].strip() == b"a" and "fl/a/manifest.json" in files and "boot.py" in files


def _rollout_state(path: Path) -> dict[str, Any] | None:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # not written yet
    return d if isinstance(d, dict) else None


def _node(st: dict[str, Any] | None, mac: str) -> dict[str, Any]:
    nodes = st.get("nodes") if st else None
    n = nodes.get(mac) if isinstance(nodes, dict) else None
    return n if isinstance(n, dict) else {}


def test_five_nodes_updated_from_the_cli_one_power_cycled(tmp_path: Path) -> None:
    work = tmp_path
    # ---- what the owner builds: keys, the running app (v1), the new app (v2) and its signed package
    _cli("keys", "new", "--out", "keys", "--name", "owner", cwd=work)
    common = ["--arch", "x64", "--owner-key", "keys/owner.pub"]
    _cli("build", "--board", "sim-gateway", "--out", "build/gateway", *common, cwd=work)
    _cli("build", "--board", "sim-node", "--out", "build/node-v1", *common, cwd=work)
    (work / "app2").mkdir()
    (work / "app2" / "greeting.py").write_text("TEXT = 'fieldlink app v2'\n")
    _cli("build", "--board", "sim-node", "--out", "build/node-v2", "--app", "app2", "--version", "0.2.0",
         *common, cwd=work)
    _cli("ota", "make", "build/node-v2", "--key", "keys/owner.key", "--counter", "5", "--out", "pkg/node-v2",
         cwd=work)
    manifest = work / "pkg" / "node-v2.ota.json"
    m = json.loads(manifest.read_text())
    assert m["kind"] == "app" and m["version"] == "0.2.0" and m["counter"] == 5
    state_file = work / "pkg" / "node-v2.ota.json.rollout.json"  # MANIFEST.rollout.json, written by the CLI

    macs = [mac_hex(node_mac(i)) for i in range(1, NODES + 1)]
    victim_mac = macs[0]  # the canary: first of the sorted targets
    cable = UplinkCable()
    air: AirHub | None = None
    boards: list[VirtualBoard] = []
    gateway: VirtualBoard | None = None
    try:
        air = start_air(seed=13)
        _provision(work / "gateway", "sim-gateway", work / "build" / "gateway")
        gateway = VirtualBoard(work / "gateway", board="sim-gateway", mac=GATEWAY_MAC, air=air, name="gateway",
                               env={"FIELDLINK_UPLINK": cable.gateway_path}).start()
        scenario = default_scenario(NODES, 13)
        for i in range(1, NODES + 1):
            d = work / f"node{i}"
            _provision(d, "sim-node", work / "build" / "node-v1")
            boards.append(VirtualBoard(d, board="sim-node", mac=node_mac(i), air=air, scenario=scenario,
                                       name=f"node{i}"))
        # ---- commissioning with the host library (the port is the CLI's alone later)
        with UplinkClient(cable.plug()) as c:
            c.wait_for(lambda msg: msg.get("t") == "boot", timeout=60)
            c.pair_begin(600, timeout=20)
            c.time_sync(timeout=20)
            for b in boards:
                b.start()
            end = time.monotonic() + 180
            while True:
                peers = {str(p.get("mac")): p for p in c.peers(timeout=20)}
                if set(macs) <= set(peers) and all(peers[x].get("fw") and peers[x].get("app") for x in macs):
                    break
                assert time.monotonic() < end, f"nodes known to the gateway: {sorted(peers)}"
                time.sleep(1.0)
            for mac in macs:  # every node runs v1 from slot a, trusts the owner key, nothing on trial
                assert peers[mac]["app"] == "0.1.0", peers[mac]  # v1's bundle manifest: the rollout's old version
                ota = c.node_command(mac, "status", timeout=30)["st"]["ota"]
                assert ota["trial"] is None and ota["keys"], (mac, ota)
                assert ota["versions"].get("app") is None, (mac, ota)
        cable.unplug()

        # ---- the rollout, from the CLI; the canary loses power in the middle of its transfer, seen in the
        # rollout state the CLI keeps (progress in 10 % steps)
        port = cable.plug()
        push = subprocess.Popen(
            [sys.executable, "-m", "fieldlink_host", "ota", "push", str(manifest), "--port", port, "--to", "all",
             "--canary", "20", "--halt-on", "1", "--confirm-timeout", "300", "--wave-timeout", "900"],
            cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        cycled_at: float | None = None
        try:
            end = time.monotonic() + 1500
            while push.poll() is None:
                assert time.monotonic() < end, "fieldlink ota push did not finish"
                if cycled_at is None:
                    v = _node(_rollout_state(state_file), victim_mac)
                    prog = v.get("progress")
                    if v.get("state") == "updating" and isinstance(prog, int | float) and 30 <= prog <= 90:
                        cycled_at = float(prog)
                        boards[0].restart()  # power cut: the process dies, the board boots from its flash
                time.sleep(0.05)
            out, err = push.communicate(timeout=60)
        finally:
            if push.poll() is None:
                push.kill()
                push.communicate()
        cable.unplug()
        report = f"exit {push.returncode}\n{out}\n{err[-3000:]}"
        assert cycled_at is not None, "the canary was not power-cycled during its transfer\n" + report
        assert push.returncode == 0, report
        rows = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.split() and ln.split()[0] in macs}
        assert sorted(rows) == macs, report
        for mac, cols in rows.items():  # node, old version, new version, state
            assert cols[1:4] == ["0.1.0", "0.2.0", "updated"], (mac, cols, report)
        st = _rollout_state(state_file)
        assert st is not None and st["waves"][0] == [victim_mac] and [len(w) for w in st["waves"]] == [1, 2, 2]

        # ---- what the boards say (through the gateway) and hold (on their flash)
        with UplinkClient(cable.plug()) as c:
            transfers = c.request("ota_state", timeout=20)["r"]["nodes"]
            for mac in macs:
                t = transfers[mac]
                assert t["state"] == "transferred", (mac, t)
                # every node got the whole image: it sent each chunk once (plus what was resent)
                assert t["total"] > 0 and t["done"] == t["total"], (mac, t)
            v = transfers[victim_mac]
            # the cycled node resumed: its session was picked up again (REFUSE "session" from the rebooted
            # node, then START: the node answers with its resume point), and what went twice is a small
            # part of what was sent before the cut (a restart from zero would resend all of it)
            assert v["resumes"] >= 1, v
            before_cut = v["total"] * cycled_at / 100  # done/total/resent count chunks
            assert v["resent"] < before_cut / 2, (v, cycled_at)
            for mac in macs:
                ota = c.node_command(mac, "status", timeout=30)["st"]["ota"]
                assert ota["versions"].get("app") == "0.2.0" and ota["counters"].get("app") == 5, (mac, ota)
                assert ota["trial"] is None and ota["last_rollback"] is None, (mac, ota)
            assert c.status(timeout=20)["link"]["bad_auth"] == 0
        cable.unplug()
        for i, b in enumerate(boards, 1):
            assert b.running, b.lines[-40:]
            files = BoardFlash(b.dir).files()  # LittleFS is consistent on flash while the board runs
            assert files["fl/active"].strip() == b"b", f"node{i}"
            assert files["fl/b/greeting.mpy"] == (work / "build" / "node-v2" / "greeting.mpy").read_bytes()
            assert "fl/trial" not in files, f"node{i}"
    finally:
        for b in boards:
            b.stop()
        if gateway is not None:
            gateway.stop()
        if air is not None:
            air.stop()
        cable.close()
