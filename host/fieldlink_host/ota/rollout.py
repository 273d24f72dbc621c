"""Staged OTA rollouts through a gateway (docs/ota.md "Rollouts"), a library on top of
:class:`fieldlink_host.uplink.UplinkClient` (any object with its ``request`` and ``recv`` methods).

The signed image (manifest, signature, payload) is uploaded to the gateway once (``ota_image`` /
``ota_data``, resumable), then pushed (``ota_push``) to the canaries first and to the remaining nodes in
waves that double in size. The gateway feeds the nodes over ESP-NOW (sleeping nodes when they wake, when
their battery is above the threshold) and reports ``ota`` messages; a node reports the outcome of the
activation itself (events ``ota_confirmed`` / ``ota_rollback`` of fieldlink.ota.hook, or for an ``app``
image a heartbeat whose ``app`` is the new version).
A failed or rolled-back canary halts the rollout; so do ``halt_on`` failures in the waves. Every change is
written to a JSON state file, so a host restart continues where it stopped.

Per-node update state uses Zigbee2MQTT's vocabulary (:meth:`NodeUpdate.z2m`): ``state`` (``idle``,
``available``, ``scheduled``, ``updating``), ``progress`` (percent), ``remaining`` (seconds),
``installed_version``, ``latest_version``, so the bridge can publish it as is.

Example::

    with UplinkClient("/dev/ttyACM0") as gw:
        ro = Rollout(gw, load_image(Path("fw.bin.ota.json")), ["02000000000b", "02000000000c"],
                     state_path=Path("fw.rollout.json"), canary_pct=10)
        report = ro.run()
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fieldlink_host.errors import FieldlinkError
from fieldlink_host.uplink import all_peers

#: payload bytes per ``ota_data`` command: with msgpack, COBS and CRC it stays below the gateway's
#: 1024-byte serial frame limit (docs/protocol.md "Frame size")
UPLOAD_CHUNK = 768
MAGIC = b"FLO1"
SIG_LEN = 64
TERMINAL = ("updated", "failed", "rolled_back", "skipped")


class GatewayPort(Protocol):
    def request(self, op: str, /, to: str | None = None, timeout: float = 10.0, ttl: int | None = None,
                check: bool = True, **args: Any) -> dict[str, Any]: ...

    def recv(self, timeout: float | None = None) -> dict[str, Any] | None: ...


def image_id(manifest: bytes) -> int:
    """The 32-bit content id of an update (the device computes the same: fieldlink.ota.mailbox)."""
    return int.from_bytes(hashlib.sha256(manifest).digest()[:4], "big")


@dataclass(frozen=True)
class UpdateImage:
    manifest_bytes: bytes
    signature: bytes
    payload: bytes
    manifest: dict[str, Any]
    path: Path

    @property
    def ident(self) -> int:
        return image_id(self.manifest_bytes)

    @property
    def version(self) -> str:
        return str(self.manifest.get("version"))

    @property
    def blob_size(self) -> int:
        return len(MAGIC) + 2 + len(self.manifest_bytes) + SIG_LEN + len(self.payload)


def load_image(manifest_path: Path) -> UpdateImage:
    """A signed manifest (``X.ota.json`` or ``BUNDLE/ota.json``), its signature (same name, ``.sig``)
    and its payload (the manifest's ``payload`` file, next to it); size and SHA-256 are checked."""
    where = str(manifest_path)
    try:
        raw = manifest_path.read_bytes()
    except OSError as exc:
        raise FieldlinkError(f"cannot read the manifest: {exc.strerror or exc}", where) from None
    try:
        m = json.loads(raw)
    except ValueError:
        raise FieldlinkError("not a signed manifest (invalid JSON)", where) from None
    if not isinstance(m, dict) or not all(isinstance(m.get(k), t) for k, t in
                                          (("payload", str), ("size", int), ("sha256", str), ("version", str))):
        raise FieldlinkError("not a signed manifest (payload, size, sha256, version)", where)
    if not manifest_path.name.endswith(".json"):
        raise FieldlinkError("a signed manifest file name ends with .json", where)
    sig_path = manifest_path.with_name(manifest_path.name[:-5] + ".sig")
    try:
        sig = sig_path.read_bytes()
    except OSError:
        raise FieldlinkError(f"signature {sig_path.name} not found next to the manifest", where) from None
    if len(sig) != SIG_LEN:
        raise FieldlinkError(f"signature is {len(sig)} bytes, not {SIG_LEN}", str(sig_path))
    if len(raw) >= 1024:
        raise FieldlinkError("manifest is larger than 1023 bytes", where)
    if isinstance(m.get("stream_size"), int):
        # an OTA package (fieldlink ota make): NAME.ota.json, NAME.ota.sig, NAME.ota.bin (the stream the
        # device receives; for an app the bundle manifest followed by its files, checked by the device)
        pay_path = manifest_path.with_name(manifest_path.name[:-5] + ".bin")
        try:
            payload = pay_path.read_bytes()
        except OSError:
            raise FieldlinkError(f"stream {pay_path.name} not found next to the manifest", where) from None
        if len(payload) != m["stream_size"]:
            raise FieldlinkError(f"stream is {len(payload)} bytes, the manifest says {m['stream_size']}", str(pay_path))
        if m.get("kind") != "app" and hashlib.sha256(payload).hexdigest() != m["sha256"]:
            raise FieldlinkError("stream does not match the manifest (sha256)", str(pay_path))
        return UpdateImage(raw, sig, payload, m, manifest_path)
    pay_path = manifest_path.parent / m["payload"]
    try:
        payload = pay_path.read_bytes()
    except OSError:
        raise FieldlinkError(f"payload {m['payload']} not found next to the manifest", where) from None
    if len(payload) != m["size"] or hashlib.sha256(payload).hexdigest() != m["sha256"]:
        raise FieldlinkError("payload does not match the manifest (size or sha256)", str(pay_path))
    return UpdateImage(raw, sig, payload, m, manifest_path)


@dataclass
class NodeUpdate:
    mac: str
    latest_version: str
    wave: int = 0
    state: str = "available"             # Zigbee2MQTT: idle | available | scheduled | updating
    progress: float | None = None        # percent
    remaining: int | None = None         # seconds
    installed_version: str | None = None
    old_version: str | None = None
    result: str = "pending"              # pending | transferred | updated | failed | rolled_back | skipped
    reason: str | None = None
    started: float | None = None         # wall time when the transfer began
    transferred_at: float | None = None

    def z2m(self) -> dict[str, Any]:
        return {"state": self.state, "progress": self.progress, "remaining": self.remaining,
                "installed_version": self.installed_version, "latest_version": self.latest_version}

    @property
    def terminal(self) -> bool:
        return self.result in TERMINAL


@dataclass
class RolloutState:
    image_id: int
    version: str
    waves: list[list[str]]
    nodes: dict[str, NodeUpdate]
    wave: int = 0
    uploaded: bool = False
    halted: bool = False
    reason: str | None = None
    finished: bool = False
    failures: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["nodes"] = {k: asdict(v) for k, v in self.nodes.items()}
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RolloutState:
        nodes = {k: NodeUpdate(**v) for k, v in d.pop("nodes").items()}
        return cls(nodes=nodes, **d)


def plan_waves(targets: list[str], canary_pct: float, growth: int = 2) -> list[list[str]]:
    """Canaries first (ceil(pct % of the targets), at least one when pct > 0), then waves that grow by
    ``growth`` each time (2x the canaries, 4x, ...) until every target is in one."""
    if not targets:
        return []
    if not 0 <= canary_pct <= 100:
        raise FieldlinkError(f"--canary must be between 0 and 100 %, got {canary_pct}")
    n = max(1, math.ceil(len(targets) * canary_pct / 100)) if canary_pct > 0 else 0
    waves = [targets[:n]] if n else []
    i, size = n, max(n, 1) * growth
    while i < len(targets):
        waves.append(targets[i:i + size])
        i += size
        size *= growth
    return waves


@dataclass
class Report:
    state: RolloutState

    @property
    def ok(self) -> bool:
        return not self.state.halted and all(n.result == "updated" for n in self.state.nodes.values())


class Rollout:
    """One rollout; see the module comment. ``run()`` drives it to the end (or the halt)."""

    def __init__(self, port: GatewayPort, image: UpdateImage, targets: list[str], *, state_path: Path,
                 canary_pct: float = 10, halt_on: int = 1, battery: int = 0, growth: int = 2,
                 confirm_timeout: float = 300, wave_timeout: float = 3600,
                 on_change: Callable[[RolloutState], None] | None = None,
                 clock: Callable[[], float] = time.time, poll: float = 0.2) -> None:
        if halt_on < 1:
            raise FieldlinkError(f"--halt-on must be at least 1, got {halt_on}")
        if not 0 <= battery <= 100:
            raise FieldlinkError(f"--battery must be between 0 and 100 %, got {battery}")
        self.port = port
        self.image = image
        self.path = state_path
        self.halt_on = halt_on
        self.battery = battery
        self.confirm_timeout = confirm_timeout
        self.wave_timeout = wave_timeout
        self.on_change = on_change
        self.clock = clock
        self.poll = poll
        self.state = self._load() or self._new(targets, canary_pct, growth)
        self.save()

    # ------------------------------------------------------------------ state file
    def _new(self, targets: list[str], canary_pct: float, growth: int) -> RolloutState:
        macs = []
        for t in targets:
            mac = t.replace(":", "").lower()
            if len(mac) != 12 or any(c not in "0123456789abcdef" for c in mac):
                raise FieldlinkError(f"not a MAC address: {t!r}")
            if mac not in macs:
                macs.append(mac)
        if not macs:
            raise FieldlinkError("no target nodes")
        waves = plan_waves(macs, canary_pct, growth)
        nodes = {}
        for w, wave in enumerate(waves):
            for mac in wave:
                nodes[mac] = NodeUpdate(mac, self.image.version, wave=w)
        return RolloutState(self.image.ident, self.image.version, waves, nodes,
                            settings={"canary_pct": canary_pct, "halt_on": self.halt_on, "battery": self.battery})

    def _load(self) -> RolloutState | None:
        try:
            d = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise FieldlinkError(f"cannot read the rollout state: {exc}", str(self.path)) from None
        try:
            st = RolloutState.from_json(d)
        except (TypeError, KeyError, AttributeError):
            raise FieldlinkError("not a rollout state file", str(self.path)) from None
        if st.image_id != self.image.ident:
            raise FieldlinkError(f"belongs to another image (id {st.image_id:08x}, this one {self.image.ident:08x}); "
                                 "use another --state file", str(self.path))
        return st

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.state.to_json(), indent=1, sort_keys=True))
        os.replace(tmp, self.path)
        if self.on_change is not None:
            self.on_change(self.state)

    # ------------------------------------------------------------------ steps
    def upload(self, chunk: int = UPLOAD_CHUNK) -> None:
        """Send the image to the gateway's flash (continues a partial upload)."""
        img = self.image
        r = self.port.request("ota_image", timeout=20, id=img.ident, size=len(img.payload),
                              sha256=hashlib.sha256(img.payload).digest(), m=img.manifest_bytes, sig=img.signature)
        have = int(r["r"]["have"])
        while have < len(img.payload):
            r = self.port.request("ota_data", timeout=20, id=img.ident, off=have, d=img.payload[have:have + chunk])
            have = int(r["r"]["have"])
        self.state.uploaded = True
        self.save()

    def old_versions(self) -> None:
        """installed/old version of each target from the gateway's peer table (None if unknown): for an
        app image the node's installed app version (heartbeat ``app``); ``fw`` is the framework version,
        not the version of any update kind, so other kinds stay unknown."""
        if self.image.manifest.get("kind") != "app":
            return
        try:
            peers = all_peers(self.port, timeout=10)
        except FieldlinkError:
            return
        for p in peers:
            n = self.state.nodes.get(str(p.get("mac")))
            if n is not None and n.old_version is None and p.get("app") is not None:
                n.old_version = n.installed_version = str(p["app"])

    def run(self) -> Report:
        st = self.state
        if st.finished:
            return Report(st)
        if not st.uploaded:
            self.upload()
        self.old_versions()
        while st.wave < len(st.waves) and not st.halted:
            wave = [st.nodes[m] for m in st.waves[st.wave]]
            todo = [n for n in wave if not n.terminal]
            if todo:
                self.port.request("ota_push", timeout=20, id=self.image.ident, nodes=[n.mac for n in todo],
                                  batt=self.battery)
                for n in todo:
                    if n.state not in ("updating",):
                        n.state = "scheduled"
                self.save()
                self._wait(wave)
            self._judge(wave)
            if not st.halted:
                st.wave += 1
            self.save()
        for n in st.nodes.values():
            if not n.terminal:
                n.result = "skipped"
                n.reason = n.reason or "rollout halted"
                n.state = "available"
        st.finished = True
        self.save()
        return Report(st)

    def _judge(self, wave: list[NodeUpdate]) -> None:
        st = self.state
        bad = [n for n in wave if n.result in ("failed", "rolled_back")]
        if st.wave == 0 and st.settings.get("canary_pct", 0) > 0 and bad:
            n = bad[0]
            st.halted = True
            st.reason = f"canary {n.mac} {n.result.replace('_', ' ')}: {n.reason}"
            return
        st.failures += len(bad)
        if st.failures >= self.halt_on:
            st.halted = True
            st.reason = f"{st.failures} node(s) failed (--halt-on {self.halt_on})"

    def _wait(self, wave: list[NodeUpdate]) -> None:
        end = self.clock() + self.wave_timeout
        while not all(n.terminal for n in wave):
            now = self.clock()
            if now >= end:
                for n in wave:
                    if not n.terminal:
                        self._fail(n, "failed", "timeout")
                break
            for n in wave:
                if n.result == "transferred" and n.transferred_at is not None \
                        and now - n.transferred_at > self.confirm_timeout:
                    self._fail(n, "failed", "no confirmation after the transfer")
            msg = self.port.recv(self.poll)
            if msg is not None and self.handle(msg):
                self.save()

    def _fail(self, n: NodeUpdate, result: str, reason: str | None) -> None:
        n.result = result
        n.reason = reason
        n.state = "available" if result == "failed" else "idle"
        n.remaining = None
        self.save()

    # ------------------------------------------------------------------ messages
    def handle(self, msg: dict[str, Any]) -> bool:
        """Apply one gateway message; True if a node's state changed."""
        n = self.state.nodes.get(str(msg.get("from")))
        if n is None or n.terminal:
            return False
        t = msg.get("t")
        if t == "ota" and msg.get("id") == self.image.ident:
            return self._ota(n, msg)
        d = msg.get("d")
        if not isinstance(d, dict):
            return False
        if t == "evt" and isinstance(d.get("d"), dict):
            # the node's OTA hook after the switch (docs/ota.md "Boot and confirm")
            e = d["d"]
            if d.get("ev") == "ota_confirmed" and e.get("version") == self.image.version:
                return self._updated(n, self.image.version)
            if d.get("ev") == "ota_rollback" and e.get("version") == self.image.version:
                self._fail(n, "rolled_back", str(e.get("reason") or "rolled back"))
                return True
            return False
        if t == "nhb" and self.image.manifest.get("kind") == "app" and d.get("app") == self.image.version:
            # the node runs the new app, confirmed (after its switch; or it had it already); other kinds
            # are confirmed by the ota_confirmed event or the FIN's activation result
            return self._updated(n, self.image.version)
        return False

    def _updated(self, n: NodeUpdate, version: str) -> bool:
        n.result = "updated"
        n.installed_version = version
        n.state = "idle"
        n.progress = None
        n.remaining = None
        n.reason = None
        return True

    def _ota(self, n: NodeUpdate, msg: dict[str, Any]) -> bool:
        s = msg.get("state")
        now = self.clock()
        if s == "scheduled":
            n.state = "scheduled"
            n.progress = n.remaining = None
            err = msg.get("err")
            n.reason = f"battery below {self.battery} %" if err == "battery" else (str(err) if err else None)
        elif s == "updating":
            n.state = "updating"
            done, total = msg.get("done"), msg.get("total")
            if n.started is None:
                n.started = now
            n.reason = None
            if isinstance(done, int) and isinstance(total, int) and total > 0:
                n.progress = round(100 * done / total, 1)
                el = now - n.started
                n.remaining = math.ceil((total - done) * el / done) if done > 0 and el > 0 else None
        elif s == "transferred":
            n.state = "updating"
            n.progress = 100.0
            n.remaining = 0
            n.result = "transferred"
            n.transferred_at = now
            r = msg.get("r")
            if isinstance(r, dict) and r.get("reboot") is False and r.get("version") == self.image.version:
                return self._updated(n, self.image.version)     # rules, keys: active without a switch
        elif s == "failed":
            self._fail(n, "failed", str(msg.get("err")))
        else:
            return False
        return True


def resolve_targets(spec: str, port: GatewayPort, groups: Path | None = None) -> list[str]:
    """``all`` (every node the gateway knows), ``@GROUP`` (a list in the groups JSON file), or MACs
    separated by commas."""
    spec = spec.strip()
    if spec == "all":
        return sorted(str(p["mac"]) for p in all_peers(port, timeout=10) if "mac" in p)
    if spec.startswith("@"):
        if groups is None:
            raise FieldlinkError(f"--to {spec} needs --groups FILE (JSON: {{\"group\": [MAC, ...]}})")
        try:
            g = json.loads(groups.read_text())
        except (OSError, ValueError) as exc:
            raise FieldlinkError(f"cannot read the groups file: {exc}", str(groups)) from None
        members = g.get(spec[1:]) if isinstance(g, dict) else None
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise FieldlinkError(f"no group {spec[1:]!r} (a list of MACs)", str(groups))
        return [m.replace(":", "").lower() for m in members]
    return [m.strip() for m in spec.split(",") if m.strip()]


def format_table(st: RolloutState) -> str:
    rows = [("node", "old version", "new version", "state", "reason")]
    for n in st.nodes.values():
        rows.append((n.mac, n.old_version or "?", (n.installed_version or "?") if n.result == "updated" else "-",
                     n.result, n.reason or ""))
    w = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    if st.halted:
        lines.append(f"halted: {st.reason}")
    return "\n".join(lines)
