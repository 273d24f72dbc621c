"""The host's lists of roles, relay restore policies and sensor drivers are the device's own tables
(fieldlink_host.boards imports them); here the device tables are checked against the device code they
describe, so a role, policy or driver cannot be listed without being implemented (or the reverse)."""

from __future__ import annotations

import ast
from pathlib import Path

from fieldlink.node import sensors
from fieldlink.relays import RESTORE, Relays
from fieldlink.runtime import config
from fieldlink_host import boards

DEVICE = Path(__file__).resolve().parents[2] / "device" / "fieldlink"


class _Pin:
    def __init__(self, num: int, value: int) -> None:
        self.v = value

    def value(self, v: int | None = None) -> int:
        if v is not None:
            self.v = v
        return self.v


def test_host_lists_are_the_device_tables() -> None:
    assert boards.ROLES == tuple(config.ROLES) == ("node", "gateway")
    assert boards.RESTORE == tuple(RESTORE)
    assert boards.SENSOR_DRIVERS == tuple(sensors.QUANTITIES)


def test_every_role_has_a_start_module() -> None:
    found = sorted(p.parent.name for p in DEVICE.glob("*/start.py"))
    assert found == sorted(config.ROLES)
    for role in config.ROLES:
        tree = ast.parse((DEVICE / role / "start.py").read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == "start" for n in tree.body), role


def test_every_driver_has_a_module_and_is_built_by_the_sensor_manager() -> None:
    modules = sorted(p.stem for p in (DEVICE / "drivers").glob("*.py") if p.stem not in ("__init__", "base"))
    assert sorted(sensors.QUANTITIES) == modules
    src = (DEVICE / "node" / "sensors.py").read_text()
    for d in sensors.QUANTITIES:
        assert f"from fieldlink.drivers.{d} import" in src, d


def test_every_restore_policy_is_implemented() -> None:
    cfg = {"relays": [{"name": "r", "pin": 4, "restore": "off"}]}
    for policy in RESTORE:
        cfg["relays"][0]["restore"] = policy
        rl = Relays(cfg, pin_factory=_Pin, restore=True)
        assert rl.state("r") is (policy == "on")  # "last" with nothing persisted stays off
