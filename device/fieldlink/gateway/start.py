# Start the gateway role from the board config (called by fieldlink.main.run through role_start):
# the serial uplink, the GatewayLink, the Gateway. Everything the gateway bundle carries is reachable
# from here (docs/deploy.md "Per-role bundles").
import sys

from fieldlink.gateway.role import Gateway
from fieldlink.gateway.uplink import FileTransport, StdioTransport, Uplink, detach_repl
from fieldlink.link.gateway_link import GatewayLink
from fieldlink.link.radio import link_kw, radio
from fieldlink.runtime.platform import unix
from fieldlink.runtime.state import State
from fieldlink.runtime.tasks import Log


def make_transport(uplink):
    if uplink and uplink != "stdio":
        return FileTransport(uplink)
    if not unix():
        detach_repl()  # hardware: USB CDC belongs to the uplink now
    return StdioTransport()


def build_gateway(cfg, store, uplink=None, wdt=None, esp_mac=None):
    opts = cfg.get("options") or {}
    state = State(store + "/gw_state.json")
    log = Log("gw")
    up = Uplink(make_transport(uplink), boot=state.boot, capacity=int(opts.get("ring_buffer", 256)),
                window=int(opts.get("uplink_window", 16)), host_timeout_ms=int(opts.get("host_timeout_ms", 3000)),
                max_frame=int(opts.get("uplink_max_frame", 1024)), log=log)

    def sink(lvl, text):  # warnings and errors go to the host; stderr stays free on the unix port
        if lvl in ("warn", "error"):
            up.send({"t": "log", "lvl": lvl, "msg": text})
        if unix():
            sys.stderr.write("[gw] %s: %s\n" % (lvl, text))
    log.sink = sink
    wlan, esp, mac = esp_mac or radio(cfg)
    link = GatewayLink(esp, mac, channel=int(opts.get("channel", 1)), **link_kw(cfg, wlan, store))
    return Gateway(cfg, link, up, log=log, boot=state.boot, wdt=wdt, ota=make_ota(opts, store))


def make_ota(opts, store):
    """The OTA mailbox (image from the host in <store>/ota_img, fan-out to the nodes), or None when the
    bundle has no fieldlink.ota or there is no store."""
    if not store:
        return None
    try:
        from fieldlink.ota.mailbox import ImageStore, Mailbox
    except ImportError:
        return None
    return Mailbox(ImageStore(store + "/ota_img", int(opts.get("ota_max_image", 2 * 1024 * 1024))),
                   max_sessions=int(opts.get("ota_sessions", 4)), budget=int(opts.get("ota_budget", 8)),
                   chunk=int(opts.get("ota_chunk", 200)), window=int(opts.get("ota_window", 16)))


def start(cfg, store, relays, wdt, app, uplink):
    """The Gateway for this board (relays, if any, stay in their safe state: the gateway drives none)."""
    return build_gateway(cfg, store, uplink, wdt)
