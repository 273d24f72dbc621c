"""Rollout engine (fieldlink_host.ota.rollout) against an in-process gateway: the real device mailbox and
node receivers (fieldlink.ota.mailbox / transfer_node) behind a fake ``UplinkClient`` (request/recv, the
arguments go through msgpack like on the serial line). Nodes confirm, roll back, sleep, run low on battery."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "device"))

from fieldlink.ota import mailbox as mb  # noqa: E402
from fieldlink.ota.transfer_node import NodeOta  # noqa: E402
from fieldlink_host.cli import main as cli_main  # noqa: E402
from fieldlink_host.errors import FieldlinkError  # noqa: E402
from fieldlink_host.ota.rollout import Rollout, format_table, image_id, load_image, plan_waves  # noqa: E402
from test_ota_mailbox import FakeUpdater  # noqa: E402
from test_ota_transfer import Chan  # noqa: E402

SIG = bytes(range(64))


FW = "0.1.0"  # fieldlink.VERSION of the nodes (heartbeat and peers "fw"): not the version of any update


def make_image(tmp: Path, version: str = "2.0", size: int = 5000, kind: str = "app") -> Path:
    payload = bytes((i * 7 + 3) & 0xFF for i in range(size))
    (tmp / "fw.bin").write_bytes(payload)
    m = {"board": "sim-node", "counter": 3, "fieldlink_ota": 1, "key_id": "00" * 8, "kind": kind,
         "payload": "fw.bin", "sha256": hashlib.sha256(payload).hexdigest(), "size": size, "version": version}
    p = tmp / "fw.bin.ota.json"
    p.write_bytes(json.dumps(m, sort_keys=True, separators=(",", ":")).encode())
    (tmp / "fw.bin.ota.sig").write_bytes(SIG)
    return p


class Node:
    def __init__(self, gw: FakeGateway, i: int, behaviour: str, battery: int, sleep: int) -> None:
        self.mac = bytes([2, 0, 0, 0, 0, i + 1])
        self.hex = self.mac.hex()
        self.behaviour = behaviour
        self.battery = battery
        self.sleep = sleep              # wake every `sleep` steps (0 = always awake)
        self.app = "1.0"                # installed app version (heartbeat and peers "app")
        self.upd = FakeUpdater(SIG if behaviour != "badsig" else bytes(64))
        self.ota = NodeOta(str(gw.tmp / f"n{i}"), self.upd, battery=lambda: self.battery)
        self.chan = Chan(i + 1, gw.loss)
        self.done = False


class FakeGateway:
    """request()/recv() like UplinkClient; each recv() advances the simulated air by some ticks."""

    def __init__(self, tmp: Path, behaviours: list[str], batteries: list[int] | None = None,
                 sleeps: list[int] | None = None, loss: float = 0.0) -> None:
        self.tmp = tmp
        self.loss = loss
        self.box = mb.Mailbox(mb.ImageStore(str(tmp / "gw")))
        self.nodes = [Node(self, i, b, (batteries or [100] * len(behaviours))[i],
                           (sleeps or [0] * len(behaviours))[i]) for i, b in enumerate(behaviours)]
        self.by_mac = {n.mac: n for n in self.nodes}
        self.out: list[dict[str, Any]] = []
        self.t = 0
        self.pushes: list[list[str]] = []
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    def request(self, op: str, /, to: str | None = None, timeout: float = 10.0, ttl: int | None = None,
                check: bool = True, **args: Any) -> dict[str, Any]:
        a = msgpack.unpackb(msgpack.packb(args, use_bin_type=True), raw=False)   # what the wire carries
        if op == "peers":
            return {"ok": True, "r": [{"mac": n.hex, "fw": FW, "app": n.app} for n in self.nodes]}
        ok, r, err = self.box.command(op, a, self.t)
        if not ok:
            raise FieldlinkError(f"{op} failed: {err}")
        if op == "ota_push":
            self.pushes.append(list(a["nodes"]))
            for n in self.nodes:
                if n.hex in a["nodes"] and not n.sleep:
                    self.box.heard(n.mac, self.t)
        return {"ok": True, "r": r}

    def step(self) -> None:
        t = self.t
        for n in self.nodes:
            if (n.sleep and t % n.sleep == 0) or (not n.sleep and t % 100 == 0):
                self.box.heard(n.mac, t)            # telemetry / heartbeat (a sleeper: when it wakes)
        out, _ = self.box.poll(t)
        for mac, m in out:
            self.by_mac[mac].chan.send("r", m, t)
        for n in self.nodes:
            for to, m in n.chan.due(t):
                if to == "r":
                    rep = n.ota.on_msg(m, t)
                    if rep is not None:
                        n.chan.send("s", rep, t)
                else:
                    self.box.on_msg(n.mac, m, t)
            if n.ota.result is not None and not n.done:
                n.done = True
                if n.ota.result[0]:
                    self.activate(n)
        self.out += self.box.events()
        self.t += 1

    def activate(self, n: Node) -> None:
        """What the node reports after the switch: an app node its heartbeat with the new "app", any other
        kind the hook's ota_confirmed event; or a rollback. "stale" nodes (the switch did not happen) send
        a heartbeat with the old app and "fw" = the image version (the framework version by chance)."""
        m = json.loads(self.box.store.meta["m"])
        if n.behaviour == "rollback":
            self.out.append({"t": "evt", "from": n.hex, "d": {"ev": "ota_rollback", "sev": "warning", "d": {
                "kind": m["kind"], "version": m["version"], "reason": "self-test failed"}}})
        elif n.behaviour == "silent":
            pass
        elif n.behaviour == "stale":
            self.out.append({"t": "nhb", "from": n.hex, "d": {"fw": m["version"], "app": n.app, "boot": 2}})
        elif m["kind"] == "app":
            n.app = m["version"]
            self.out.append({"t": "nhb", "from": n.hex, "d": {"fw": FW, "app": n.app, "boot": 2}})
        else:
            self.out.append({"t": "evt", "from": n.hex, "d": {"ev": "ota_confirmed", "sev": "info", "d": {
                "kind": m["kind"], "version": m["version"]}}})

    def recv(self, timeout: float | None = None) -> dict[str, Any] | None:
        for _ in range(200):
            if self.out:
                break
            self.step()
        self.now += 0.2
        return self.out.pop(0) if self.out else None


def macs(n: int) -> list[str]:
    return [bytes([2, 0, 0, 0, 0, i + 1]).hex() for i in range(n)]


def rollout(gw: FakeGateway, img: Path, targets: list[str], **kw: Any) -> Rollout:
    kw.setdefault("state_path", img.with_name("state.json"))
    return Rollout(gw, load_image(img), targets, clock=gw.clock, poll=0, **kw)


def test_plan_waves() -> None:
    t = [f"{i:012x}" for i in range(10)]
    assert plan_waves(t, 10) == [t[:1], t[1:3], t[3:7], t[7:]]
    assert plan_waves(t, 25) == [t[:3], t[3:9], t[9:]]
    assert plan_waves(t, 0) == [t[:2], t[2:6], t[6:]]
    assert plan_waves(t[:1], 50) == [t[:1]]
    with pytest.raises(FieldlinkError):
        plan_waves(t, 120)


def test_rollout_canaries_first_then_waves(tmp_path: Path) -> None:
    img = make_image(tmp_path)
    gw = FakeGateway(tmp_path, ["ok"] * 5, loss=0.1)
    ro = rollout(gw, img, macs(5), canary_pct=20)
    rep = ro.run()
    assert rep.ok, format_table(rep.state)
    assert gw.pushes == [macs(5)[:1], macs(5)[1:3], macs(5)[3:]]
    for n in rep.state.nodes.values():
        assert n.result == "updated" and n.old_version == "1.0" and n.installed_version == "2.0"
        assert n.z2m() == {"state": "idle", "progress": None, "remaining": None, "installed_version": "2.0",
                           "latest_version": "2.0"}
    for n in gw.nodes:
        assert bytes(n.upd.slot) == img.with_name("fw.bin").read_bytes()
    table = format_table(rep.state)
    assert table.splitlines()[0].split() == ["node", "old", "version", "new", "version", "state", "reason"]
    assert table.count(" 1.0 ") == 5 and table.count("updated") == 5
    saved = json.loads(img.with_name("state.json").read_text())
    assert saved["finished"] and saved["image_id"] == image_id(img.read_bytes())


def test_heartbeat_counts_only_its_app_version_not_fw(tmp_path: Path) -> None:
    # the image version equals the nodes' framework version ("fw"): a heartbeat still on the old app is
    # not a confirmation, so the node fails (no confirmation after the transfer); the other one updates
    img = make_image(tmp_path, version=FW)
    gw = FakeGateway(tmp_path, ["ok", "stale"])
    st = rollout(gw, img, macs(2), canary_pct=0, confirm_timeout=30, wave_timeout=600).run().state
    ok, stale = st.nodes[macs(2)[0]], st.nodes[macs(2)[1]]
    assert ok.result == "updated" and ok.old_version == "1.0" and ok.installed_version == FW, format_table(st)
    assert stale.result == "failed" and stale.reason == "no confirmation after the transfer", format_table(st)
    assert stale.old_version == "1.0"       # from the heartbeat's "app", never "fw"


def test_other_kinds_are_confirmed_by_the_event_not_the_heartbeat(tmp_path: Path) -> None:
    img = make_image(tmp_path, version=FW, kind="firmware")
    gw = FakeGateway(tmp_path, ["ok", "stale"])
    st = rollout(gw, img, macs(2), canary_pct=0, confirm_timeout=30, wave_timeout=600).run().state
    ok, stale = st.nodes[macs(2)[0]], st.nodes[macs(2)[1]]
    assert ok.result == "updated" and ok.installed_version == FW, format_table(st)
    assert stale.result == "failed", format_table(st)
    # the old firmware version is unknown: neither the app version nor the framework version
    assert ok.old_version is None and stale.old_version is None


def test_canary_that_rolls_back_halts_the_rollout(tmp_path: Path) -> None:
    img = make_image(tmp_path)
    gw = FakeGateway(tmp_path, ["rollback", "ok", "ok", "ok"])
    rep = rollout(gw, img, macs(4), canary_pct=25).run()
    st = rep.state
    assert st.halted and not rep.ok
    assert st.reason == f"canary {macs(4)[0]} rolled back: self-test failed"
    assert gw.pushes == [macs(4)[:1]]                   # nobody else got the update
    assert [n.result for n in st.nodes.values()] == ["rolled_back", "skipped", "skipped", "skipped"]
    assert all(n.upd.begins == 0 for n in gw.nodes[1:])
    assert "halted: canary" in format_table(st)


def test_failed_canary_transfer_halts_too(tmp_path: Path) -> None:
    img = make_image(tmp_path)
    gw = FakeGateway(tmp_path, ["badsig", "ok"])
    st = rollout(gw, img, macs(2), canary_pct=50).run().state
    assert st.halted and "bad signature" in (st.reason or "") and gw.pushes == [macs(2)[:1]]


def test_halt_on_k_failures_in_the_waves(tmp_path: Path) -> None:
    img = make_image(tmp_path)
    gw = FakeGateway(tmp_path, ["ok", "badsig", "ok", "badsig", "ok", "ok", "ok", "ok"])
    st = rollout(gw, img, macs(8), canary_pct=10, halt_on=2, wave_timeout=200).run().state
    assert st.halted and st.reason == "2 node(s) failed (--halt-on 2)", format_table(st)
    assert gw.pushes == [macs(8)[:1], macs(8)[1:3], macs(8)[3:7]]
    res = [n.result for n in st.nodes.values()]
    assert res == ["updated", "failed", "updated", "failed", "updated", "updated", "updated", "skipped"]
    # with a higher limit the same fleet finishes (the failures stay failures)
    gw2 = FakeGateway(tmp_path / "b" if (tmp_path / "b").mkdir() is None else tmp_path,
                      ["ok", "badsig", "ok", "badsig", "ok", "ok", "ok", "ok"])
    st2 = rollout(gw2, img, macs(8), canary_pct=10, halt_on=3, state_path=tmp_path / "s2.json").run().state
    assert not st2.halted and [n.result for n in st2.nodes.values()].count("updated") == 6


class Crash(Exception):
    pass


def test_state_survives_a_host_restart(tmp_path: Path) -> None:
    img = make_image(tmp_path)
    gw = FakeGateway(tmp_path, ["ok"] * 4)
    real = gw.request
    calls = {"push": 0}

    def crashing(op: str, /, *a: Any, **kw: Any) -> dict[str, Any]:
        if op == "ota_push":
            calls["push"] += 1
            if calls["push"] == 2:
                raise Crash()               # the host dies when it starts the second wave
        return real(op, *a, **kw)
    gw.request = crashing  # type: ignore[method-assign]
    with pytest.raises(Crash):
        rollout(gw, img, macs(4), canary_pct=25).run()
    saved = json.loads(img.with_name("state.json").read_text())
    assert saved["wave"] == 1 and saved["nodes"][macs(4)[0]]["result"] == "updated"
    gw.request = real  # type: ignore[method-assign]
    pushes = len(gw.pushes)
    # a new process: the targets come from the state file; the canary is not updated again
    st = rollout(gw, img, [], canary_pct=25).run().state
    assert [n.result for n in st.nodes.values()] == ["updated"] * 4
    assert gw.pushes[pushes:] == [macs(4)[1:3], macs(4)[3:]]
    # the upload was not repeated either (the gateway had it)
    assert st.uploaded
    with pytest.raises(FieldlinkError, match="another image"):
        rollout(gw, make_image(tmp_path / "o" if (tmp_path / "o").mkdir() is None else tmp_path, "3.0"),
                [], state_path=img.with_name("state.json"))


def test_sleeping_node_below_battery_threshold_is_scheduled_not_started(tmp_path: Path) -> None:
    img = make_image(tmp_path)
    gw = FakeGateway(tmp_path, ["ok", "ok"], batteries=[90, 20], sleeps=[0, 40])
    seen: list[dict[str, Any]] = []
    ro = rollout(gw, img, macs(2), canary_pct=0, battery=50, wave_timeout=60,
                 on_change=lambda st: seen.append(st.nodes[macs(2)[1]].z2m() | {"reason": st.nodes[macs(2)[1]].reason}))
    st = ro.run().state
    low = st.nodes[macs(2)[1]]
    assert st.nodes[macs(2)[0]].result == "updated"
    assert low.result == "failed" and low.reason == "timeout"
    assert {"state": "scheduled", "progress": None, "remaining": None, "installed_version": "1.0",
            "latest_version": "2.0", "reason": "battery below 50 %"} in seen
    assert gw.nodes[1].upd.begins == 0 and gw.box.counters["low_battery"] >= 2   # asked at every wake


def test_sleeping_node_updates_at_its_wakes(tmp_path: Path) -> None:
    img = make_image(tmp_path, size=12000)
    gw = FakeGateway(tmp_path, ["ok"], batteries=[80], sleeps=[400])
    seen: list[dict[str, Any]] = []
    st = rollout(gw, img, macs(1), canary_pct=0, battery=50,
                 on_change=lambda st: seen.append(st.nodes[macs(1)[0]].z2m())).run().state
    assert st.nodes[macs(1)[0]].result == "updated"
    states = [s["state"] for s in seen]
    assert "scheduled" in states and "updating" in states and states[-1] == "idle"
    prog = [s["progress"] for s in seen if s["state"] == "updating" and s["progress"] is not None]
    assert prog == sorted(prog) and len(prog) >= 3 and prog[-1] > 50
    assert any(s["remaining"] is not None and s["remaining"] > 0 for s in seen)


def test_bad_image_files_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = make_image(tmp_path)
    (tmp_path / "fw.bin").write_bytes(b"tampered")
    with pytest.raises(FieldlinkError, match="does not match the manifest"):
        load_image(img)
    img.with_name("fw.bin.ota.sig").unlink()
    with pytest.raises(FieldlinkError, match="signature fw.bin.ota.sig not found"):
        load_image(img)
    (tmp_path / "x.json").write_text("{nope")
    with pytest.raises(FieldlinkError, match="invalid JSON"):
        load_image(tmp_path / "x.json")
    rc = cli_main(["ota", "push", str(tmp_path / "missing.ota.json"), "--port", "/dev/null", "--to", "all"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("fieldlink: error: ") and "Traceback" not in err and len(err.splitlines()) == 1
    with pytest.raises(FieldlinkError, match="not a MAC"):
        rollout(FakeGateway(tmp_path, ["ok"]), make_image(tmp_path / "g" if (tmp_path / "g").mkdir() is None else tmp_path),
                ["zz"])


def test_cli_push_prints_the_table_and_fails_on_a_halt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import fieldlink_host.uplink as uplink_mod
    img = make_image(tmp_path)
    gws: list[FakeGateway] = []

    class Client:
        def __init__(self, port: str, baud: int = 0) -> None:
            assert port == "/dev/ttyFAKE"
            self.gw = FakeGateway(tmp_path, ["ok", "rollback", "ok"])
            gws.append(self.gw)

        def __enter__(self) -> FakeGateway:
            return self.gw

        def __exit__(self, *exc: object) -> None:
            pass
    monkeypatch.setattr(uplink_mod, "UplinkClient", Client)
    rc = cli_main(["ota", "push", str(img), "--port", "/dev/ttyFAKE", "--to", ",".join(macs(3)), "--canary", "34",
                   "--wave-timeout", "300"])
    out, err = capsys.readouterr()
    assert rc == 1
    lines = out.strip().splitlines()
    assert lines[0].split()[0] == "node" and len(lines) == 5, out          # header, 3 nodes, halt line
    assert lines[3].split()[:4] == [macs(3)[2], "1.0", "-", "skipped"]
    assert lines[1].split()[:4] == [macs(3)[0], "1.0", "2.0", "updated"]
    assert lines[2].split()[:4] == [macs(3)[1], "1.0", "-", "rolled_back"] and "self-test failed" in lines[2]
    # 34 % of 3 nodes: 2 canaries, the second rolls back
    assert err == f"fieldlink: error: ota push: rollout halted: canary {macs(3)[1]} rolled back: self-test failed\n"
    # the state file sits next to the manifest; running again continues (nothing left to do: same table)
    assert img.with_name(img.name + ".rollout.json").exists()
    rc = cli_main(["ota", "push", str(img), "--port", "/dev/ttyFAKE", "--to", "all"])
    out2, _ = capsys.readouterr()
    assert rc == 1 and out2 == out and gws[1].pushes == []
