"""``fieldlink bridge install-service``: a systemd unit and a udev rule, written to a directory.

Files carry a marker line; an existing file without it was not written by us and is never overwritten.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from fieldlink_host.errors import FieldlinkError

MARKER = "# written by `fieldlink bridge install-service`; edits are overwritten by the next run"

#: Espressif's USB Serial/JTAG (ESP32-S3/C6 native USB)
DEFAULT_VENDOR = "303a"
DEFAULT_PRODUCT = "1001"


def systemd_unit(config: str, user: str, exe: str | None = None) -> str:
    cmd = exe or f"{shlex.quote(sys.executable)} -m fieldlink_host"
    return f"""{MARKER}
[Unit]
Description=fieldlink bridge (gateway serial -> SQLite -> MQTT, web page)
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User={user}
ExecStart={cmd} bridge --config {shlex.quote(config)}
Restart=always
RestartSec=3
# passwords belong in the config file (mode 0600) or here as FIELDLINK_BRIDGE_MQTT_PASSWORD
Environment=PYTHONUNBUFFERED=1

[Install]
WantedBy=multi-user.target
"""


def udev_rule(name: str, vendor: str, product: str, serial: str | None = None) -> str:
    match = f'SUBSYSTEM=="tty", ATTRS{{idVendor}}=="{vendor}", ATTRS{{idProduct}}=="{product}"'
    if serial:
        match += f', ATTRS{{serial}}=="{serial}"'
    return f"""{MARKER}
# gives the gateway a stable name: /dev/{name}
{match}, SYMLINK+="{name}", MODE="0660", GROUP="dialout"
"""


def _check(path: Path) -> None:
    if path.exists():
        try:
            first = path.read_text(errors="replace").splitlines()[:1]
        except OSError as exc:
            raise FieldlinkError(f"{path}: cannot read: {exc.strerror}") from exc
        if first != [MARKER]:
            raise FieldlinkError(f"{path} exists and was not written by fieldlink; refusing to overwrite it")


def _write(path: Path, text: str) -> Path:
    try:
        path.write_text(text)
    except OSError as exc:
        raise FieldlinkError(f"{path}: cannot write: {exc.strerror}") from exc
    return path


def install_service(directory: str | Path, config: str, user: str = "fieldlink", name: str = "fieldlink-gw",
                    vendor: str = DEFAULT_VENDOR, product: str = DEFAULT_PRODUCT, serial: str | None = None,
                    unit_name: str = "fieldlink-bridge.service", udev_dir: str | Path | None = None) -> list[Path]:
    d = Path(directory)
    u = Path(udev_dir) if udev_dir is not None else d
    for x in (d, u):
        if not x.is_dir():
            raise FieldlinkError(f"{x}: no such directory")
    for v, what in ((vendor, "vendor"), (product, "product")):
        if len(v) != 4 or any(c not in "0123456789abcdefABCDEF" for c in v):
            raise FieldlinkError(f"--{what} must be 4 hex digits, got {v!r}")
    files = {d / unit_name: systemd_unit(config, user),
             u / f"99-{name}.rules": udev_rule(name, vendor.lower(), product.lower(), serial)}
    for path in files:          # all checked before anything is written
        _check(path)
    return [_write(path, text) for path, text in files.items()]
