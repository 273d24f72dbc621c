"""`fieldlink bridge`: gateway serial <-> SQLite <-> MQTT / Home Assistant, plus the fleet web page."""

from __future__ import annotations

import argparse

from fieldlink_host.bridge.config import load_config
from fieldlink_host.bridge.service import DEFAULT_PRODUCT, DEFAULT_VENDOR, install_service

EXAMPLES = """examples:
  fieldlink bridge --port /dev/ttyACM0 --db farm.db
        store everything the gateway sends; page and MQTT off
  fieldlink bridge --port /dev/ttyACM0 --db farm.db --mqtt mqtt://127.0.0.1:1883 --web 127.0.0.1:8080
        publish to a local broker (Home Assistant discovery on) and serve the page
  FIELDLINK_BRIDGE_MQTT_PASSWORD=secret fieldlink bridge --config /etc/fieldlink/bridge.toml
        settings from a TOML file, the password from the environment
  fieldlink bridge install-service --dir /etc/systemd/system --udev-dir /etc/udev/rules.d --config /etc/fieldlink/bridge.toml
        write fieldlink-bridge.service (Restart=always) and a udev rule naming the gateway /dev/fieldlink-gw
  fieldlink bridge --port /dev/ttyACM0 --db farm.db --mqtt mqtt://127.0.0.1:1883 --ota-dir ota/ --ota-key keys/owner.pub
        offer the signed packages in ota/ to the nodes (Zigbee2MQTT-style ota_update requests, HA update entities)

environment: FIELDLINK_BRIDGE_<SETTING> overrides the file (e.g. FIELDLINK_BRIDGE_SITE, FIELDLINK_BRIDGE_MQTT_URL,
FIELDLINK_BRIDGE_MQTT_USERNAME, FIELDLINK_BRIDGE_MQTT_PASSWORD, FIELDLINK_BRIDGE_WEB_TOKEN); options override both.
"""


def _run(args: argparse.Namespace) -> int:
    from fieldlink_host.bridge.run import run_bridge

    cfg = load_config(args.config, port=args.port, db=args.db, mqtt_url=args.mqtt, web_listen=args.web,
                      site=args.site, bridge_id=args.bridge_id, mqtt_username=args.mqtt_user,
                      mqtt_ca=args.mqtt_ca, mqtt_cert=args.mqtt_cert, mqtt_key=args.mqtt_key,
                      ota_dir=args.ota_dir, ota_key=args.ota_key)
    if not cfg.port:
        from fieldlink_host.errors import FieldlinkError
        raise FieldlinkError("bridge: --port DEV (or port in the config) is required")
    cfg.check()
    run_bridge(cfg, seconds=args.seconds)
    return 0


def _install(args: argparse.Namespace) -> int:
    paths = install_service(args.dir, args.config, user=args.user, name=args.name, vendor=args.vendor,
                            product=args.product, serial=args.serial, udev_dir=args.udev_dir)
    for p in paths:
        print(f"wrote {p}")
    print("then: systemctl daemon-reload && systemctl enable --now fieldlink-bridge; udevadm control --reload")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "bridge", help="bridge a gateway to SQLite, MQTT/Home Assistant and a web page",
        description="Own the gateway's serial port, store every message in SQLite before acknowledging it, "
                    "publish to MQTT (QoS 1, in order, backlog kept while the broker is away) with Home "
                    "Assistant discovery, and serve the fleet page and JSON API. See docs/bridge.md.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="TOML config file")
    p.add_argument("--port", default=None, help="gateway serial port (e.g. /dev/ttyACM0, /dev/fieldlink-gw)")
    p.add_argument("--db", default=None, help="SQLite database file (created if missing)")
    p.add_argument("--mqtt", default=None, metavar="URL", help="broker: mqtt://host[:1883] or mqtts://host[:8883]")
    p.add_argument("--mqtt-user", default=None, help="broker user (password: config or FIELDLINK_BRIDGE_MQTT_PASSWORD)")
    p.add_argument("--mqtt-ca", default=None, help="CA certificate (PEM) for mqtts")
    p.add_argument("--mqtt-cert", default=None, help="client certificate (PEM)")
    p.add_argument("--mqtt-key", default=None, help="client key (PEM)")
    p.add_argument("--web", default=None, metavar="HOST:PORT",
                   help="serve the page and API (beyond 127.0.0.1 needs [web] user+password or token)")
    p.add_argument("--site", default=None, help="site name in the topics (default farm)")
    p.add_argument("--bridge-id", default=None, help="bridge id (MQTT client id, message ids)")
    p.add_argument("--ota-dir", default=None, metavar="DIR",
                   help="signed OTA packages (fieldlink ota make) offered through bridge/request/device/ota_update")
    p.add_argument("--ota-key", default=None, metavar="PUB",
                   help="owner public key(s), comma-separated: packages not signed by one are refused")
    p.add_argument("--seconds", type=float, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_run)
    ssub = p.add_subparsers(dest="bridge_command", metavar="install-service")
    i = ssub.add_parser("install-service", help="write a systemd unit and a udev rule",
                        description="Write fieldlink-bridge.service (Restart=always, After=network-online.target) "
                                    "and 99-NAME.rules (a stable /dev/NAME for the gateway). Files not written by "
                                    "this command are never overwritten.",
                        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    i.add_argument("--dir", required=True, help="directory for the unit (and the rule unless --udev-dir)")
    i.add_argument("--udev-dir", default=None, help="directory for the udev rule")
    i.add_argument("--config", default="/etc/fieldlink/bridge.toml", help="config file the unit runs with")
    i.add_argument("--user", default="fieldlink", help="service user (needs the dialout group)")
    i.add_argument("--name", default="fieldlink-gw", help="stable device name (/dev/NAME)")
    i.add_argument("--vendor", default=DEFAULT_VENDOR, help="USB vendor id (default Espressif 303a)")
    i.add_argument("--product", default=DEFAULT_PRODUCT, help="USB product id (default 1001, USB Serial/JTAG)")
    i.add_argument("--serial", default=None, help="USB serial number, to pick one of several gateways")
    i.set_defaults(func=_install)
