"""The bridge's web page and JSON API (FastAPI + Jinja2, served by uvicorn in the bridge process).

No CDN, no external assets: charts are inline SVG drawn on the server, live updates are a few lines of
inline script on server-sent events (``/api/events``). Security (docs/bridge.md "Web"): bound to
anything but 127.0.0.1 the whole app requires HTTP Basic or a bearer token; every state-changing
request is a POST and a POST whose ``Origin`` is not this host is refused.
"""

from __future__ import annotations

import asyncio
import base64
import json
import queue
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from jinja2 import DictLoader, Environment, select_autoescape
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from pydantic import BaseModel, Field

from fieldlink_host.bridge.config import WebConfig
from fieldlink_host.bridge.core import Bridge, Pending, iso
from fieldlink_host.bridge.ota import OtaRequestError
from fieldlink_host.bridge.store import now_ms
from fieldlink_host.errors import FieldlinkError

BASE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{% block title %}fieldlink{% endblock %}</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#f4f6f4;color:#1d2b1d}
header{background:#2f5d3a;color:#fff;padding:.6em 1em}header a{color:#fff;margin-right:1em}
main{padding:1em}table{border-collapse:collapse;background:#fff;width:100%}
th,td{border-bottom:1px solid #dde;padding:.35em .6em;text-align:left;font-size:.92em}
.on{background:#2f8f46;color:#fff}.off{background:#ccc}button{border:0;border-radius:4px;padding:.3em .7em;cursor:pointer}
.offline{color:#a33}.online{color:#2f8f46}.anom{color:#b50;font-weight:bold}
svg{background:#fff;border:1px solid #dde;margin:.3em 0}.card{background:#fff;padding:.6em 1em;margin-bottom:1em}
</style></head><body><header><b>fieldlink</b> &nbsp; <a href="/">Fleet</a><a href="/diagnostics">Diagnostics</a>
<a href="/docs">API</a><span id="live">…</span></header><main>{% block body %}{% endblock %}</main>
<script>
async function post(url, body){const r=await fetch(url,{method:'POST',headers:{'Content-Type':'application/json'},body:JSON.stringify(body||{})});
 const j=await r.json().catch(()=>({}));const s=document.getElementById('result');if(s)s.textContent=JSON.stringify(j);return j;}
function relayBtn(b,on){b.className=on?'on':'off';b.dataset.on=on?'1':'0';b.textContent=b.dataset.name+': '+(on?'ON':'OFF');}
function toggle(b){post('/api/devices/'+b.dataset.mac+'/relay/'+b.dataset.name,{op:b.dataset.on==='1'?'off':'on'})
 .then(j=>{if(j.r&&'on' in j.r)relayBtn(b,j.r.on);});}
const es=new EventSource('/api/events');es.onopen=()=>{document.getElementById('live').textContent='live'};
es.onmessage=(e)=>{const ev=JSON.parse(e.data);if(window.onLive)window.onLive(ev);
 if(ev.type==='state'&&ev.state){for(const [n,v] of Object.entries(ev.state.relays||{})){
  const b=document.getElementById('relay-'+ev.node+'-'+n);if(b)relayBtn(b,v==='ON');}}
 if(ev.type==='ack'&&ev.op==='relay'&&ev.r&&'on' in ev.r){const b=document.getElementById('relay-'+ev.device+'-'+ev.r.name);if(b)relayBtn(b,ev.r.on);}
 if(ev.type==='tel'){for(const [s,l] of Object.entries(ev.latest||{})){for(const [q,v] of Object.entries(l.values||{})){
  const c=document.getElementById('v-'+ev.node+'-'+s+'-'+q);if(c)c.textContent=typeof v==='number'?v.toFixed(2):v;}}
  const r=document.getElementById('rssi-'+ev.node);if(r)r.textContent=ev.rssi;
  const o=document.getElementById('st-'+ev.node);if(o){o.textContent='online';o.className='online';}}
 if(ev.type==='status'){const o=document.getElementById('st-'+ev.node);if(o){o.textContent=ev.online?'online':'offline';o.className=ev.online?'online':'offline';}}};
</script>{% block script %}{% endblock %}</body></html>"""

OVERVIEW = """{% extends "base" %}{% block title %}fieldlink fleet{% endblock %}{% block body %}
<h2>Fleet: {{ devices|length }} nodes, {{ info.online }} online</h2>
<p>Gateway {{ info.gateway.name or '?' }} fw {{ info.gateway.fw or '?' }} —
{{ 'connected' if info.gateway.connected else 'NOT connected' }}; MQTT {{ 'connected' if info.mqtt.connected else ('not configured' if not info.mqtt.configured else 'disconnected') }},
backlog {{ info.backlog }}; permit join {{ 'open' if info.permit_join else 'closed' }}</p>
<table id="fleet"><tr><th>node</th><th>status</th><th>RSSI</th><th>firmware</th><th>last seen</th><th>readings</th><th>relays</th></tr>
{% for d in devices %}<tr class="node" data-mac="{{ d.mac }}">
<td><a href="/node/{{ d.mac }}">{{ d.friendly_name }}</a></td>
<td id="st-{{ d.mac }}" class="{{ 'online' if d.online else 'offline' }}">{{ 'online' if d.online else 'offline' }}</td>
<td id="rssi-{{ d.mac }}">{{ d.rssi }}</td><td>{{ d.firmware or '' }}</td><td>{{ d.last_seen or '' }}</td>
<td>{% for s, l in d.latest.items() %}{% for q, v in l["values"].items() %}{{ s }}.{{ q }}=<span id="v-{{ d.mac }}-{{ s }}-{{ q }}">{{ '%.2f'|format(v) if v is number else v }}</span> {% endfor %}{% endfor %}</td>
<td>{% for n, on in d.relays.items() %}<button id="relay-{{ d.mac }}-{{ n }}" class="{{ 'on' if on else 'off' }}" data-mac="{{ d.mac }}" data-name="{{ n }}" data-on="{{ '1' if on else '0' }}" onclick="toggle(this)">{{ n }}: {{ 'ON' if on else 'OFF' }}</button> {% endfor %}</td></tr>
{% endfor %}</table><p id="result"></p>{% endblock %}"""

NODE = """{% extends "base" %}{% block title %}{{ d.friendly_name }}{% endblock %}{% block body %}
<h2>{{ d.friendly_name }} <small>{{ d.mac }}</small></h2>
<div class="card">status <span id="st-{{ d.mac }}" class="{{ 'online' if d.online else 'offline' }}">{{ 'online' if d.online else 'offline' }}</span>,
RSSI <span id="rssi-{{ d.mac }}">{{ d.rssi }}</span>, firmware {{ d.firmware }}, last seen {{ d.last_seen }}, sleep {{ d.sleep_ms }} ms,
counters {{ d.counters }}</div>
<div class="card"><b>Commands</b>
{% for n, on in d.relays.items() %}<button id="relay-{{ d.mac }}-{{ n }}" class="{{ 'on' if on else 'off' }}" data-mac="{{ d.mac }}" data-name="{{ n }}" data-on="{{ '1' if on else '0' }}" onclick="toggle(this)">{{ n }}: {{ 'ON' if on else 'OFF' }}</button> {% endfor %}
<button onclick="post('/api/devices/{{ d.mac }}/command',{op:'ping',a:{n:1}})">ping</button>
<button onclick="post('/api/devices/{{ d.mac }}/command',{op:'identify',a:{s:5}})">identify</button>
<button onclick="if(confirm('reboot?'))post('/api/devices/{{ d.mac }}/command',{op:'reboot',a:{}})">reboot</button>
<form onsubmit="post('/api/devices/{{ d.mac }}/command',{op:'config_set',a:{key:this.k.value,value:Number(this.v.value)}});return false">
config <input name="k" placeholder="heartbeat_s"> = <input name="v" size="6"> <button>set</button></form>
<p id="result"></p></div>
{% if ota.enabled %}{% set u = ota['update'] or {} %}<div class="card"><b>Update</b> <span id="upd-{{ d.mac }}">{{ u['state'] }}: installed {{ u['installed_version'] }}, latest {{ u['latest_version'] }}</span>
<button onclick="post('/api/devices/{{ d.mac }}/ota',{action:'check'})">check</button>
<button onclick="if(confirm('install the update?'))post('/api/devices/{{ d.mac }}/ota',{action:'update'})">install</button></div>{% endif %}
<h3>History (last {{ hours }} h)</h3><div id="charts">{{ charts|safe }}</div>{% endblock %}
{% block script %}<script>let t=0;window.onLive=(ev)=>{if(ev.type==='update'&&ev.node==='{{ d.mac }}'){const u=ev.update,s=document.getElementById('upd-{{ d.mac }}');
if(s)s.textContent=u.state+(u.progress!=null?' '+u.progress+' %':'')+': installed '+u.installed_version+', latest '+u.latest_version;}
if(ev.type==='tel'&&ev.node==='{{ d.mac }}'&&Date.now()-t>5000){t=Date.now();
fetch('/node/{{ d.mac }}/charts').then(r=>r.text()).then(h=>{document.getElementById('charts').innerHTML=h;});}};</script>{% endblock %}"""

DIAG = """{% extends "base" %}{% block title %}diagnostics{% endblock %}{% block body %}
<h2>Diagnostics</h2><div class="card">
<button onclick="post('/api/pairing',{seconds:120})">permit join 120 s</button>
<button onclick="post('/api/pairing',{seconds:0})">close join</button>
<button onclick="post('/api/time_sync',{})">time sync</button>
<button onclick="post('/api/gateway/ping',{})">ping gateway</button>
<button onclick="post('/api/gateway/status',{})">gateway status</button><p id="result"></p></div>
<h3>Bridge</h3><pre>{{ info_json }}</pre><h3>Recent events</h3><table>
{% for e in events %}<tr><td>{{ e.time }}</td><td>{{ e.node }}</td><td class="{{ 'anom' if e.ev == 'anomaly' else '' }}">{{ e.ev }}</td><td>{{ e.d }}</td></tr>{% endfor %}</table>
{% endblock %}"""


def svg_chart(points: list[tuple[int, float]], title: str, anomalies: list[tuple[int, float]],
              w: int = 640, h: int = 160) -> str:
    """A line chart as inline SVG (no scripts, no external assets)."""
    if not points:
        return f'<svg width="{w}" height="40"><text x="8" y="24">{title}: no data</text></svg>'
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs) or 1
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    pad = 30

    def sx(x: int) -> float:
        return pad + (x - x0) / max(1, x1 - x0) * (w - 2 * pad)

    def sy(y: float) -> float:
        return h - pad + -(y - y0) / (y1 - y0) * (h - 2 * pad)

    pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    dots = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="#c60"/>' for x, y in anomalies)
    return (f'<svg class="chart" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{title}">'
            f'<text x="{pad}" y="16" font-size="12">{title} (last {ys[-1]:.2f}, min {min(ys):.2f}, max {max(ys):.2f})</text>'
            f'<text x="2" y="{h - pad}" font-size="10">{y0:.1f}</text><text x="2" y="{pad}" font-size="10">{y1:.1f}</text>'
            f'<polyline fill="none" stroke="#2f5d3a" stroke-width="1.5" points="{pts}"/>{dots}'
            f'<text x="{pad}" y="{h - 8}" font-size="10">{iso(x0)}</text>'
            f'<text x="{w - pad - 150}" y="{h - 8}" font-size="10">{iso(x1)}</text></svg>')


class CommandBody(BaseModel):
    op: str = Field(..., min_length=1, description="node command (docs/roles.md): relay, config_set, reboot, ping, ...")
    a: dict[str, Any] = Field(default_factory=dict, description="command arguments")
    timeout: float = Field(15.0, gt=0, le=600)
    ttl: int | None = Field(None, ge=1, le=86400, description="seconds a sleeping node's command may wait")


class RelayBody(BaseModel):
    op: str = Field("toggle", pattern="^(on|off|toggle|pulse)$")
    ms: int | None = Field(None, ge=1, le=3_600_000)


class PairBody(BaseModel):
    seconds: int = Field(120, ge=0, le=3600, description="0 closes the window")


class OtaBody(BaseModel):
    action: str = Field("check", pattern="^(check|update|schedule|unschedule)$",
                        description="check: is a newer signed package there? update/schedule: start it (answered "
                                    "at once; follow GET .../ota); unschedule: cancel it")
    manifest: str | None = Field(None, description="a NAME.ota.json in the bridge's OTA directory (default: the "
                                                   "newest package for the node's board)")
    kind: str | None = Field(None, pattern="^(app|firmware|rules|keys)$")
    battery: int = Field(0, ge=0, le=100, description="start only with the node's battery at or above this %")


class BridgeCollector:
    """Prometheus metrics computed from the bridge at scrape time."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        b = self.bridge
        info = b.info()
        for k, v in b.counters.items():
            c = CounterMetricFamily(f"fieldlink_bridge_{k}", f"bridge counter {k}")
            c.add_metric([], v)
            yield c
        for name, val, doc in (("nodes", info["nodes"], "known nodes"), ("nodes_online", info["online"], "online nodes"),
                               ("mqtt_backlog", info["backlog"], "messages waiting for the broker"),
                               ("mqtt_connected", int(info["mqtt"]["connected"]), "1 if connected to the broker"),
                               ("gateway_connected", int(bool(info["gateway"]["connected"])), "1 if the gateway port is open"),
                               ("db_bytes", b.store.size_bytes(), "SQLite database size")):
            g = GaugeMetricFamily(f"fieldlink_bridge_{name}", doc)
            g.add_metric([], val)
            yield g
        d = CounterMetricFamily("fieldlink_bridge_mqtt_dropped", "unpublished messages dropped by retention")
        d.add_metric([], info["mqtt_dropped"])
        yield d
        rssi = GaugeMetricFamily("fieldlink_node_rssi_dbm", "last RSSI per node", labels=["node"])
        for dev in b.device_list():
            if isinstance(dev["rssi"], int):
                rssi.add_metric([dev["mac"]], dev["rssi"])
        yield rssi


def create_app(bridge: Bridge, web: WebConfig | None = None) -> FastAPI:
    web = web or bridge.cfg.web
    need_auth = bool(web.listen) and web.needs_auth()
    if need_auth and not web.has_credentials():
        raise FieldlinkError(f"web: {web.listen} is beyond 127.0.0.1 and needs [web] user+password or token")
    env = Environment(loader=DictLoader({"base": BASE, "overview": OVERVIEW, "node": NODE, "diag": DIAG}),
                      autoescape=select_autoescape(default=True))
    app = FastAPI(title="fieldlink bridge", version=bridge.info()["version"],
                  description="Fleet, telemetry history, commands, pairing and time sync of one fieldlink gateway.")
    registry = CollectorRegistry()
    registry.register(BridgeCollector(bridge))  # type: ignore[arg-type]

    def authorized(request: Request) -> bool:
        if not need_auth:
            return True
        h = request.headers.get("authorization", "")
        scheme, _, cred = h.partition(" ")
        if scheme.lower() == "bearer" and web.token:
            return secrets.compare_digest(cred.strip().encode(), web.token.encode())
        if scheme.lower() == "basic" and web.user and web.password:
            try:
                user, _, pw = base64.b64decode(cred.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return secrets.compare_digest(user.encode(), web.user.encode()) and \
                secrets.compare_digest(pw.encode(), web.password.encode())
        return False

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if not authorized(request):
            return JSONResponse({"detail": "authentication required"}, status_code=401,
                                headers={"WWW-Authenticate": 'Basic realm="fieldlink"'})
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("origin")
            if origin is not None and urlsplit(origin).netloc != request.headers.get("host", ""):
                return JSONResponse({"detail": "cross-site request refused"}, status_code=403)
        return await call_next(request)

    def device(mac: str) -> dict[str, Any]:
        for d in bridge.device_list():
            if d["mac"] == mac or d["friendly_name"] == mac:
                return d
        raise HTTPException(404, f"unknown device {mac}")

    def run(p: Pending, timeout: float) -> dict[str, Any]:
        p.done.wait(timeout + 1)
        return p.as_dict()

    def send(mac: str | None, op: str, args: dict[str, Any], timeout: float, ttl: int | None = None) -> dict[str, Any]:
        try:
            p = bridge.command(mac, op, args, timeout=timeout, ttl=ttl, source="api")
        except FieldlinkError as exc:
            raise HTTPException(503, str(exc)) from exc
        return run(p, timeout if not ttl else 2.0)

    # ------------------------------------------------------------------ pages
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def overview() -> str:
        return env.get_template("overview").render(devices=bridge.device_list(), info=bridge.info())

    def charts(mac: str, hours: float) -> str:
        dev = device(mac)
        since = now_ms() - int(hours * 3600_000)
        parts = []
        for sensor, quantities in sorted(dev["sensors"].items()):
            for q in quantities:
                rows = bridge.store.history(dev["mac"], sensor, q, since_ms=since, limit=100_000)
                step = max(1, len(rows) // 600)
                pts = [(r["ts"], float(r["value"])) for r in rows[::step] if r["value"] is not None]
                an = [(r["ts"], float(r["value"])) for r in rows if r["anomaly"] and r["value"] is not None]
                parts.append(svg_chart(pts, f"{sensor} {q}", an))
        return "".join(parts) or "<p>no telemetry yet</p>"

    @app.get("/node/{mac}", response_class=HTMLResponse, include_in_schema=False)
    def node_page(mac: str, hours: float = 1.0) -> str:
        d = device(mac)
        return env.get_template("node").render(d=d, charts=charts(mac, hours), hours=hours,
                                               ota=bridge.ota.status(d["mac"]))

    @app.get("/node/{mac}/charts", response_class=HTMLResponse, include_in_schema=False)
    def node_charts(mac: str, hours: float = 1.0) -> str:
        return charts(mac, hours)

    @app.get("/diagnostics", response_class=HTMLResponse, include_in_schema=False)
    def diagnostics() -> str:
        return env.get_template("diag").render(info_json=json.dumps(bridge.info(), indent=1, default=str),
                                               events=list(bridge.recent)[-50:][::-1])

    # ------------------------------------------------------------------ API
    @app.get("/api/info", summary="bridge, gateway, MQTT and counters")
    def api_info() -> dict[str, Any]:
        return bridge.info()

    @app.get("/api/devices", summary="every node with status, RSSI, firmware, latest readings, relays")
    def api_devices() -> list[dict[str, Any]]:
        return bridge.device_list()

    @app.get("/api/devices/{mac}", summary="one node")
    def api_device(mac: str) -> dict[str, Any]:
        return device(mac)

    @app.get("/api/telemetry", summary="history of one node (optionally one sensor/quantity) in a time range")
    def api_telemetry(node: str, sensor: str | None = None, quantity: str | None = None,
                      since: int | None = None, until: int | None = None, limit: int = 10_000) -> dict[str, Any]:
        mac = device(node)["mac"]
        rows = bridge.store.history(mac, sensor, quantity, since, until, min(max(limit, 1), 100_000))
        return {"node": mac, "rows": rows}

    @app.post("/api/devices/{mac}/command", summary="run a node command; waits for the result (or queued/timeout)")
    def api_command(mac: str, body: CommandBody) -> dict[str, Any]:
        return send(device(mac)["mac"], body.op, body.a, body.timeout, body.ttl)

    @app.post("/api/devices/{mac}/relay/{name}", summary="switch a relay: on, off, toggle, pulse")
    def api_relay(mac: str, name: str, body: RelayBody) -> dict[str, Any]:
        d = device(mac)
        if name not in d["relays"]:
            raise HTTPException(404, f"{d['mac']} has no relay {name!r}")
        args: dict[str, Any] = {"name": name, "op": body.op}
        if body.ms is not None:
            args["ms"] = body.ms
        return send(d["mac"], "relay", args, 15.0)

    @app.get("/api/devices/{mac}/ota", summary="the node's update state (idle|available|scheduled|updating, "
             "progress, remaining, installed/latest version) and its running OTA job")
    def api_ota_state(mac: str) -> dict[str, Any]:
        return bridge.ota.status(device(mac)["mac"])

    @app.post("/api/devices/{mac}/ota", summary="OTA through the bridge: check, update, schedule, unschedule "
              "(the same as the MQTT bridge/request/device/ota_update/... requests)")
    def api_ota(mac: str, body: OtaBody) -> dict[str, Any]:
        req: dict[str, Any] = {"id": device(mac)["mac"], "battery": body.battery}
        if body.manifest is not None:
            req["manifest"] = body.manifest
        if body.kind is not None:
            req["kind"] = body.kind
        try:
            data = bridge.ota.run_request(body.action, req)
        except (OtaRequestError, FieldlinkError) as exc:
            raise HTTPException(409 if "in progress" in str(exc) else 400, str(exc)) from exc
        return {"status": "ok", "data": data}

    @app.get("/api/commands", summary="recent command results")
    def api_commands() -> list[dict[str, Any]]:
        return list(bridge.commands_done)[::-1]

    @app.post("/api/pairing", summary="open (seconds > 0) or close (0) the gateway's join window")
    def api_pairing(body: PairBody) -> dict[str, Any]:
        if body.seconds:
            return send(None, "pair_begin", {"s": body.seconds}, 10.0)
        return send(None, "pair_end", {}, 10.0)

    @app.post("/api/time_sync", summary="set the gateway clock from the host and broadcast it to the nodes")
    def api_time_sync() -> dict[str, Any]:
        return send(None, "time_sync", {"ts": now_ms()}, 10.0)

    @app.post("/api/gateway/ping", summary="ping the gateway")
    def api_gw_ping() -> dict[str, Any]:
        t0 = time.monotonic()
        r = send(None, "ping", {"n": 1}, 5.0)
        return {**r, "rtt_ms": round((time.monotonic() - t0) * 1000, 1)}

    @app.post("/api/gateway/status", summary="the gateway's status and counters")
    def api_gw_status() -> dict[str, Any]:
        return send(None, "status", {}, 10.0)

    @app.get("/api/events", summary="server-sent events: telemetry, state, acks, status changes")
    async def api_events(request: Request) -> StreamingResponse:
        q = bridge.subscribe()

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b": hello\n\n"
                idle = 0.0
                while not await request.is_disconnected():
                    sent = False
                    while True:
                        try:
                            ev = q.get_nowait()
                        except queue.Empty:
                            break
                        yield f"data: {json.dumps(ev, default=str)}\n\n".encode()
                        sent = True
                    if not sent:
                        await asyncio.sleep(0.2)
                        idle += 0.2
                        if idle >= 15:
                            idle = 0.0
                            yield b": keepalive\n\n"
            finally:
                bridge.unsubscribe(q)

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


class WebServer:
    """uvicorn in a thread of the bridge process."""

    def __init__(self, bridge: Bridge, web: WebConfig | None = None) -> None:
        self.web = web or bridge.cfg.web
        host, port = self.web.host_port()
        self.app = create_app(bridge, self.web)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host=host, port=port, log_level="warning",
                                                    access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, name="fl-web", daemon=True)

    def start(self, timeout: float = 20.0) -> WebServer:
        self.thread.start()
        end = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > end:
                raise FieldlinkError(f"web: cannot listen on {self.web.listen}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)
