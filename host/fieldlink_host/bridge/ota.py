"""OTA through the bridge (docs/bridge.md "OTA"): Zigbee2MQTT-style requests on
``{root}/bridge/request/device/ota_update/{check,update,schedule,unschedule}``, answered on
``{root}/bridge/response/device/ota_update/...``, per-node update state in the node's ``state`` topic
(``"update": {state, progress, remaining, installed_version, latest_version}``) and a Home Assistant
``update`` entity per node.

The packages are the signed ``NAME.ota.json`` / ``.ota.sig`` / ``.ota.bin`` of ``fieldlink ota make`` in
the configured ``ota_dir``; with ``ota_key`` set a package must carry a good signature of one of those keys
before it is offered. An update is a one-node rollout of :class:`fieldlink_host.ota.rollout.Rollout` (the
same engine as ``fieldlink ota push``) driven over the bridge's own uplink connection: its requests go
through :meth:`UplinkClient.request`, and the bridge hands it the gateway's ``ota``/``evt``/``nhb``
messages of that node after storing them. The engine's state file and a job file in ``ota_state_dir``
let a restarted bridge continue a rollout.

The gateway holds one image at a time, so rollouts of different images run one after the other (a job
waits in ``scheduled``); rollouts of the same image run side by side.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fieldlink_host.bridge.config import BridgeConfig
from fieldlink_host.bridge.topics import Topics
from fieldlink_host.errors import FieldlinkError
from fieldlink_host.ota.package import SUFFIX_MANIFEST, inspect_package
from fieldlink_host.ota.rollout import Rollout, RolloutState, UpdateImage, image_id, load_image
from fieldlink_host.uplink import UplinkClient, UplinkError


class _Result(Protocol):
    state: str
    result: dict[str, Any] | None


class Bridge(Protocol):
    """What the OTA part uses of the bridge (fieldlink_host.bridge.core.Bridge), so this module does not
    import the core that imports it."""

    cfg: BridgeConfig
    topics: Topics
    devices: dict[str, dict[str, Any]]
    counters: dict[str, int]
    client: UplinkClient | None

    def resolve(self, ident: Any) -> str: ...

    def command_wait(self, mac: str | None, op: str, args: dict[str, Any] | None = None,
                     timeout: float | None = None, **kw: Any) -> _Result: ...

    def _publish(self, out: list[tuple[str, dict[str, Any] | str, bool]]) -> None: ...

    def publish_update(self, mac: str, upd: dict[str, Any]) -> None: ...

log = logging.getLogger("fieldlink.bridge.ota")

REQUEST = "device/ota_update/"
ACTIONS = ("check", "update", "schedule", "unschedule")
#: kinds in the order a check offers them when the request names none
KIND_ORDER = ("app", "firmware", "rules", "keys")
#: requests served at once (each may wait for a node's status); more are refused, not queued
MAX_REQUESTS = 8


class OtaRequestError(ValueError):
    """A request that cannot be served; the message goes into the response's ``error``."""


class _Stopped(FieldlinkError):
    """The bridge stops: the rollout is left as it is and continues after a restart."""


class _Cancelled(FieldlinkError):
    """``unschedule``: the rollout ends here."""


@dataclass
class Package:
    path: Path
    manifest: dict[str, Any]
    problems: list[str]
    rel: str = ""                   # the path inside the OTA directory (what a request names)

    @property
    def name(self) -> str:
        return self.rel or self.path.name

    @property
    def kind(self) -> str:
        return str(self.manifest.get("kind"))

    @property
    def board(self) -> str:
        return str(self.manifest.get("board"))

    @property
    def version(self) -> str:
        return str(self.manifest.get("version"))

    @property
    def counter(self) -> int:
        c = self.manifest.get("counter")
        return c if isinstance(c, int) and not isinstance(c, bool) else -1


@dataclass
class Selection:
    """What a check found for one node: the package of the chosen kind and the versions to show."""
    kind: str | None
    package: Package | None
    installed_version: str | None
    latest_version: str | None
    available: bool
    skipped: list[str] = field(default_factory=list)


@dataclass
class JobFile:
    mac: str
    mode: str                       # "update" (answered when it ends) | "schedule" (answered at once)
    manifest: str
    kind: str
    installed_version: str | None
    ident: Any = None               # the request's device id, echoed in the response
    transaction: Any = None
    battery: int = 0


class _Port:
    """The rollout engine's gateway port (``request``/``recv``) on the bridge's uplink connection."""

    def __init__(self, ota: BridgeOta, job: Job) -> None:
        self.ota = ota
        self.job = job
        self.q: queue.Queue[dict[str, Any]] = queue.Queue()

    def _check(self) -> None:
        if self.ota.stopping.is_set():
            raise _Stopped("bridge stopping")
        if self.job.cancelled.is_set():
            raise _Cancelled("unscheduled")

    def request(self, op: str, /, to: str | None = None, timeout: float = 10.0, ttl: int | None = None,
                check: bool = True, **args: Any) -> dict[str, Any]:
        self._check()
        client = self.ota.bridge.client
        if client is None:
            raise UplinkError("the gateway is not connected")
        return client.request(op, to=to, timeout=timeout, ttl=ttl, check=check, **args)

    def recv(self, timeout: float | None = None) -> dict[str, Any] | None:
        self._check()
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None


@dataclass
class Job:
    spec: JobFile
    image: UpdateImage
    cancelled: threading.Event = field(default_factory=threading.Event)
    running: bool = False
    thread: threading.Thread | None = None
    port: _Port | None = None


class BridgeOta:
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        cfg = bridge.cfg
        self.dir = Path(cfg.ota_dir) if cfg.ota_dir else None
        if self.dir is not None and not self.dir.is_dir():   # at start, not at the first request
            raise FieldlinkError("ota_dir is not a directory (missing, or a file)", where=str(self.dir))
        self.keys = [Path(p.strip()) for p in (cfg.ota_key or "").split(",") if p.strip()]
        assert cfg.db is not None
        self.state_dir = Path(cfg.ota_state_dir) if cfg.ota_state_dir else Path(cfg.db + ".ota")
        self.jobs: dict[str, Job] = {}
        self.checking: set[str] = set()
        self.cond = threading.Condition()
        self.stopping = threading.Event()
        self._key_ids: dict[str, Path] | None = None
        self._slots = threading.BoundedSemaphore(MAX_REQUESTS)
        if self.keys:
            self._keys()            # a missing or bad key file stops the bridge at start, not at a request

    @property
    def enabled(self) -> bool:
        return self.dir is not None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Continue the rollouts a previous run left (their job files); a node left ``updating`` or
        ``scheduled`` without one is ``available`` again (as Zigbee2MQTT does after a restart)."""
        if self.enabled and self.state_dir.is_dir():
            self._resume()
        for mac, dev in list(self.bridge.devices.items()):
            upd = dev.get("update")
            if isinstance(upd, dict) and upd.get("state") in ("updating", "scheduled") and mac not in self.jobs:
                self.set_update(mac, {"state": "available", "installed_version": upd.get("installed_version"),
                                      "latest_version": upd.get("latest_version")})

    def _resume(self) -> None:
        for jf in sorted(self.state_dir.glob("*.job.json")):
            try:
                spec = JobFile(**json.loads(jf.read_text()))
                image = load_image(Path(spec.manifest))
            except (OSError, ValueError, TypeError, FieldlinkError) as exc:
                log.warning("bridge ota: cannot continue %s: %s", jf.name, exc)
                jf.unlink(missing_ok=True)
                continue
            if spec.mac not in self.bridge.devices:
                jf.unlink(missing_ok=True)
                continue
            log.info("bridge ota: continuing the update of %s to %s", spec.mac, image.version)
            self._launch(Job(spec, image), fresh=False)

    def stop(self) -> None:
        self.stopping.set()
        with self.cond:
            self.cond.notify_all()
        for job in list(self.jobs.values()):
            if job.thread is not None:
                job.thread.join(3)

    # ------------------------------------------------------------------ gateway messages
    def feed(self, msgs: list[dict[str, Any]]) -> None:
        """Gateway messages after the bridge stored them: a running rollout's node messages go to it."""
        if not self.jobs:
            return
        for m in msgs:
            if m.get("t") in ("ota", "evt", "nhb"):
                job = self.jobs.get(str(m.get("from")))
                if job is not None and job.port is not None:
                    job.port.q.put(m)

    # ------------------------------------------------------------------ MQTT requests
    def handle_mqtt(self, action: str, payload: bytes) -> None:
        """``bridge/request/device/ota_update/{action}``: the payload is ``{"id": DEVICE, ...}``, or the
        device id alone (a JSON string or plain text), as Zigbee2MQTT accepts."""
        body: dict[str, Any] = {}
        try:
            text = payload.decode().strip()
            try:
                obj = json.loads(text) if text else None
            except ValueError:
                obj = text
            if isinstance(obj, str):
                body = {"id": obj}
            elif isinstance(obj, dict):
                body = obj
            else:
                raise OtaRequestError("request must be {\"id\": DEVICE} or the device id")
            if action not in ACTIONS:
                raise OtaRequestError(f"unknown request ota_update/{action} (check, update, schedule, unschedule)")
            if not self._slots.acquire(blocking=False):
                raise OtaRequestError(f"too many OTA requests at once (at most {MAX_REQUESTS}); try again")
        except (OtaRequestError, UnicodeDecodeError) as exc:
            self.bridge.counters["bad_requests"] += 1
            self.respond(action, {}, str(exc), body.get("transaction"))
            return
        # served in a thread: a check waits for the node's status, never in the MQTT client's thread
        threading.Thread(target=self._serve, args=(action, body), name=f"fl-ota-{action}", daemon=True).start()

    def _serve(self, action: str, body: dict[str, Any]) -> None:
        transaction = body.get("transaction")
        try:
            data = self.run_request(action, body, from_mqtt=True)
        except (OtaRequestError, FieldlinkError) as exc:
            self.bridge.counters["bad_requests"] += 1
            self.respond(action, {"id": body.get("id")} if body.get("id") is not None else {}, str(exc), transaction)
            return
        except Exception as exc:  # noqa: BLE001 - a request never takes the bridge down; it is answered
            log.exception("bridge ota: %s failed", action)
            self.respond(action, {}, f"internal error: {type(exc).__name__}: {exc}", transaction)
            return
        finally:
            self._slots.release()
        if data is not None:
            self.respond(action, data, None, transaction)

    def respond(self, action: str, data: dict[str, Any], error: str | None, transaction: Any) -> None:
        resp: dict[str, Any] = {"data": data, "status": "error" if error else "ok"}
        if error:
            resp["error"] = error[:300]
        if transaction is not None:
            resp["transaction"] = transaction
        self.bridge._publish([(self.bridge.topics.bridge(f"response/{REQUEST}{action}"), resp, False)])

    def run_request(self, action: str, body: dict[str, Any], from_mqtt: bool = False) -> dict[str, Any] | None:
        """Serve one request; returns the response ``data`` (None: an ``update`` from MQTT is answered
        when its rollout ends). Raises OtaRequestError with the message for the response."""
        ident = body.get("id")
        try:
            mac = self.bridge.resolve(ident)
        except ValueError:
            raise OtaRequestError(f"Device '{ident}' does not exist") from None
        name = self.bridge.devices[mac].get("name") or mac
        if not self.enabled:
            raise OtaRequestError("OTA is not configured on this bridge (set ota_dir / --ota-dir)")
        if action == "unschedule":
            return self.unschedule(mac, ident)
        with self.cond:
            if mac in self.jobs or mac in self.checking:
                raise OtaRequestError(f"Update or check for update already in progress for '{name}'")
            self.checking.add(mac)
        try:
            sel = self.check(mac, body)
            if action == "check":
                data: dict[str, Any] = {"id": ident, "update_available": sel.available, "kind": sel.kind,
                                        "installed_version": sel.installed_version,
                                        "latest_version": sel.latest_version,
                                        "manifest": sel.package.name if sel.package else None}
                if sel.skipped:
                    data["skipped"] = sel.skipped
                return data
            if not sel.available or sel.package is None or sel.kind is None:
                raise OtaRequestError(f"Update of '{name}' failed (No image currently available: "
                                      f"{sel.kind or 'nothing'} {sel.installed_version} is installed)")
            try:
                image = load_image(sel.package.path)
            except FieldlinkError as exc:
                raise OtaRequestError(f"Update of '{name}' failed ({exc})") from None
            battery = body.get("battery", 0)
            if not isinstance(battery, int) or isinstance(battery, bool) or not 0 <= battery <= 100:
                raise OtaRequestError("'battery' must be a percentage 0..100")
            spec = JobFile(mac, "update" if action == "update" and from_mqtt else "schedule",
                           str(sel.package.path), sel.kind, sel.installed_version, ident, body.get("transaction"),
                           battery)
            self._launch(Job(spec, image), fresh=True)
            if spec.mode == "update":
                return None
            return {"id": ident, "kind": sel.kind, "from": {"software_build_id": sel.installed_version},
                    "to": {"software_build_id": image.version}, "state": self.update_state(mac)}
        finally:
            with self.cond:
                self.checking.discard(mac)

    # ------------------------------------------------------------------ check
    def node_info(self, mac: str) -> dict[str, Any]:
        """Board and installed versions/counters per kind from the node's ``status`` (cached in the device
        registry for a node that does not answer now, e.g. asleep)."""
        dev = self.bridge.devices[mac]
        p = None
        try:
            p = self.bridge.command_wait(mac, "status", {}, timeout=self.bridge.cfg.cmd_timeout_s, source="internal")
        except FieldlinkError:
            pass
        res = p.result if p is not None and p.state == "done" else None
        r = res.get("r") if isinstance(res, dict) else None
        st = r.get("st") if isinstance(r, dict) else None
        if isinstance(st, dict):
            o = st.get("ota")
            ota: dict[str, Any] = o if isinstance(o, dict) else {}
            info = {"board": ota.get("board") or dev.get("board"), "fw": st.get("fw"), "app": dev.get("app"),
                    "versions": dict(ota.get("versions") or {}), "counters": dict(ota.get("counters") or {})}
            dev["ota_info"] = info
            return info
        cached = dev.get("ota_info")
        if isinstance(cached, dict):
            return cached
        why = p.state if p is not None else "the gateway is not connected"
        raise OtaRequestError(f"no status from '{dev.get('name') or mac}' ({why}): its installed versions are unknown")

    def packages(self) -> list[Package]:
        """Every ``*.ota.json`` under the OTA directory, checked (fields, hashes, signature)."""
        assert self.dir is not None
        if not self.dir.is_dir():
            raise OtaRequestError(f"OTA directory {self.dir} does not exist")
        return [self.inspect(p) for p in sorted(self.dir.rglob("*" + SUFFIX_MANIFEST))]

    def _keys(self) -> dict[str, Path]:
        if self._key_ids is None:
            from fieldlink_host.keys import key_id, load_public_key
            ids = {}
            for k in self.keys:
                ids[key_id(load_public_key(k))] = k
            self._key_ids = ids
        return self._key_ids

    def inspect(self, path: Path) -> Package:
        assert self.dir is not None
        try:
            rel = path.resolve().relative_to(self.dir.resolve()).as_posix()
        except ValueError:
            rel = path.name
        try:
            m = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            return Package(path, {}, [f"unreadable signed manifest: {exc}"], rel)
        if not isinstance(m, dict):
            return Package(path, {}, ["signed manifest is not a JSON object"], rel)
        pub = None
        if self.keys:
            pub = self._keys().get(str(m.get("key_id")))
            if pub is None:
                return Package(path, m, [f"signed with key {m.get('key_id')}, not a configured ota_key"], rel)
        try:
            r = inspect_package(path, pub)
        except FieldlinkError as exc:
            return Package(path, m, [str(exc)], rel)
        return Package(path, r["manifest"], list(r["problems"]), rel)

    def explicit(self, rel: Any) -> Package:
        assert self.dir is not None
        if not isinstance(rel, str) or not rel.endswith(SUFFIX_MANIFEST):
            raise OtaRequestError(f"'manifest' must name a {SUFFIX_MANIFEST} file in the OTA directory")
        base = self.dir.resolve()
        path = (base / rel).resolve()
        if not path.is_relative_to(base):
            raise OtaRequestError(f"manifest {rel!r} is outside the OTA directory")
        if not path.is_file():
            raise OtaRequestError(f"manifest {rel!r} not found in the OTA directory")
        return self.inspect(path)

    def check(self, mac: str, body: dict[str, Any]) -> Selection:
        """Compare the newest good package for the node's board (and the requested kind) with what it has
        installed, publish the node's update state (``available`` or ``idle``) and return the result."""
        kind = body.get("kind")
        if kind is not None and kind not in KIND_ORDER:
            raise OtaRequestError(f"'kind' must be one of {', '.join(KIND_ORDER)}")
        info = self.node_info(mac)
        board = info.get("board")
        name = self.bridge.devices[mac].get("name") or mac
        if body.get("manifest") is not None:
            pkg = self.explicit(body["manifest"])
            if pkg.problems:
                raise OtaRequestError(f"package {pkg.name} refused: {pkg.problems[0]}")
            if board and pkg.board != board:
                raise OtaRequestError(f"package {pkg.name} is for board {pkg.board}, '{name}' is a {board}")
            if kind is not None and pkg.kind != kind:
                raise OtaRequestError(f"package {pkg.name} is a {pkg.kind} update, not {kind}")
            good, bad = [pkg], []
        else:
            if not board:
                raise OtaRequestError(f"'{name}' does not report its board: name the package ('manifest')")
            cands = [p for p in self.packages()
                     if p.board == board and (kind is None or p.kind == kind) and p.kind in KIND_ORDER]
            good = [p for p in cands if not p.problems]
            bad = [p for p in cands if p.problems]
            if not good:
                extra = f" (refused {bad[0].name}: {bad[0].problems[0]})" if bad else ""
                raise OtaRequestError(f"no valid OTA package for board {board}"
                                      f"{' kind ' + kind if kind else ''} in {self.dir}{extra}")
        versions = info.get("versions") or {}
        counters = info.get("counters") or {}

        def installed(k: str) -> str | None:
            v = versions.get(k)
            if v is None and k == "app":
                v = info.get("app")     # the heartbeat's installed app version (not fw: the framework's)
            return None if v is None else str(v)

        newest: dict[str, Package] = {}
        for p in good:
            if p.kind not in newest or p.counter > newest[p.kind].counter:
                newest[p.kind] = p
        order = [k for k in KIND_ORDER if k in newest]
        chosen = None
        for k in order:
            p = newest[k]
            c = counters.get(k)
            if p.counter > (c if isinstance(c, int) else -1) and p.version != installed(k):
                chosen = k
                break
        available = chosen is not None
        k = chosen or order[0]
        pkg = newest[k]
        sel = Selection(k, pkg, installed(k), pkg.version if available else (installed(k) or pkg.version),
                        available, [f"{p.name}: {p.problems[0]}" for p in bad])
        self.set_update(mac, {"state": "available" if available else "idle",
                              "installed_version": sel.installed_version, "latest_version": sel.latest_version})
        return sel

    # ------------------------------------------------------------------ update / schedule
    def _paths(self, spec: JobFile, image: UpdateImage) -> tuple[Path, Path]:
        return (self.state_dir / f"{spec.mac}.job.json",
                self.state_dir / f"{spec.mac}-{image_id(image.manifest_bytes):08x}.rollout.json")

    def _launch(self, job: Job, fresh: bool) -> None:
        spec = job.spec
        jpath, spath = self._paths(spec, job.image)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if fresh:
            spath.unlink(missing_ok=True)   # ours (a finished or failed earlier rollout of this image)
        tmp = jpath.with_name(jpath.name + ".tmp")
        tmp.write_text(json.dumps(asdict(spec)))
        tmp.replace(jpath)
        job.port = _Port(self, job)
        with self.cond:
            self.jobs[spec.mac] = job
        self.set_update(spec.mac, {"state": "scheduled", "installed_version": spec.installed_version,
                                   "latest_version": job.image.version})
        job.thread = threading.Thread(target=self._run_job, args=(job,), name=f"fl-ota-{spec.mac}", daemon=True)
        job.thread.start()

    def _run_job(self, job: Job) -> None:
        spec = job.spec
        jpath, spath = self._paths(spec, job.image)
        name = self.bridge.devices.get(spec.mac, {}).get("name") or spec.mac
        error: str | None = None
        st: RolloutState | None = None
        try:
            with self.cond:   # the gateway holds one image: wait while another one is rolled out
                while any(j.running and j.image.ident != job.image.ident for j in self.jobs.values()):
                    if self.stopping.is_set():
                        return
                    if job.cancelled.is_set():
                        raise _Cancelled("unscheduled")
                    self.cond.wait(1.0)
                job.running = True
            while self.bridge.client is None:  # e.g. a rollout continued at start, before the port is open
                if self.stopping.wait(0.2):
                    return
                if job.cancelled.is_set():
                    raise _Cancelled("unscheduled")
            assert job.port is not None
            cfg = self.bridge.cfg
            ro = Rollout(job.port, job.image, [spec.mac], state_path=spath, canary_pct=0, halt_on=1,
                         battery=spec.battery, confirm_timeout=cfg.ota_confirm_timeout_s,
                         wave_timeout=cfg.ota_timeout_s, on_change=lambda s: self._changed(job, s))
            st = ro.run().state
            n = st.nodes[spec.mac]
            if n.result != "updated":
                error = f"Update of '{name}' failed ({n.reason or n.result})"
        except _Stopped:
            return                                  # files stay: the next start continues
        except _Cancelled:
            error = f"Update of '{name}' was unscheduled"
        except FieldlinkError as exc:
            error = f"Update of '{name}' failed ({exc})"
        except Exception as exc:  # noqa: BLE001 - the bridge keeps running whatever one rollout hit
            log.exception("bridge ota: rollout for %s failed", spec.mac)
            error = f"Update of '{name}' failed (internal error: {type(exc).__name__}: {exc})"
        finally:
            with self.cond:
                job.running = False
                if not self.stopping.is_set():
                    self.jobs.pop(spec.mac, None)
                self.cond.notify_all()
        if self.stopping.is_set():
            return
        jpath.unlink(missing_ok=True)
        spath.unlink(missing_ok=True)
        if error is None:
            self.set_update(spec.mac, {"state": "idle", "installed_version": job.image.version,
                                       "latest_version": job.image.version})
        else:
            self.set_update(spec.mac, {"state": "available", "installed_version": spec.installed_version,
                                       "latest_version": job.image.version})
        if spec.mode == "update":
            data: dict[str, Any] = {"id": spec.ident}
            if error is None:
                data.update({"kind": spec.kind, "from": {"software_build_id": spec.installed_version},
                             "to": {"software_build_id": job.image.version}})
            self.respond("update", data, error, spec.transaction)
        elif error is not None:
            log.warning("bridge ota: %s", error)

    def _changed(self, job: Job, st: RolloutState) -> None:
        n = st.nodes.get(job.spec.mac)
        if n is None:
            return
        z = n.z2m()
        if n.result != "updated":       # the engine's version is the app's; show the updated kind's
            z["installed_version"] = job.spec.installed_version
        for k in ("progress", "remaining"):
            if z.get(k) is None or z.get("state") != "updating":
                z.pop(k, None)
        if z.get("state") == "available" and n.result == "pending":
            z["state"] = "scheduled"        # the engine's initial state: nothing pushed yet
        self.set_update(job.spec.mac, z)

    def unschedule(self, mac: str, ident: Any) -> dict[str, Any]:
        with self.cond:
            job = self.jobs.get(mac)
        if job is None:
            raise OtaRequestError(f"no update scheduled for '{self.bridge.devices[mac].get('name') or mac}'")
        job.cancelled.set()
        client = self.bridge.client
        if client is not None:
            try:
                client.request("ota_cancel", timeout=10, nodes=[mac])
            except FieldlinkError as exc:
                log.warning("bridge ota: ota_cancel for %s: %s", mac, exc)
        if job.thread is not None:
            job.thread.join(15)
        if job.thread is not None and job.thread.is_alive():   # still in a gateway request: it ends there
            self.set_update(mac, {"state": "available", "installed_version": job.spec.installed_version,
                                  "latest_version": job.image.version})
        return {"id": ident, "state": self.update_state(mac)}

    # ------------------------------------------------------------------ state
    def update_state(self, mac: str) -> dict[str, Any] | None:
        dev = self.bridge.devices.get(mac)
        if dev is None:
            return None
        upd = dev.get("update")
        if isinstance(upd, dict):
            return dict(upd)
        if not self.enabled:
            return None
        v = dev.get("app") or dev.get("fw")
        return {"state": "idle", "installed_version": v, "latest_version": v}

    def set_update(self, mac: str, upd: dict[str, Any]) -> None:
        """Store the node's update state and publish its state topic (retained) with it."""
        if self.stopping.is_set():   # stopping: the engine's state file has it
            return
        self.bridge.publish_update(mac, upd)

    def status(self, mac: str) -> dict[str, Any]:
        """``GET /api/devices/{mac}/ota``: the update state, the running job and the packages for the node."""
        with self.cond:
            job = self.jobs.get(mac)
        out: dict[str, Any] = {"enabled": self.enabled, "update": self.update_state(mac), "job": None}
        if job is not None:
            out["job"] = {"mode": job.spec.mode, "kind": job.spec.kind, "version": job.image.version,
                          "manifest": Path(job.spec.manifest).name, "running": job.running}
        return out
