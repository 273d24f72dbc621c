"""No import cycle in device/ or host/, and the layers point one way: the link core, runtime, codecs,
drivers and rules never import a role (gateway/, node/) or the entry (main); the two roles never import
each other. The graph is read from the source (fieldlink_host.depgraph), every import counts, lazy
ones included."""

from __future__ import annotations

from pathlib import Path

from fieldlink_host.depgraph import build_graph

ROOT = Path(__file__).resolve().parents[2]
DEVICE = ROOT / "device" / "fieldlink"


def _pkg(tmp: Path, files: dict[str, str]) -> Path:
    root = tmp / "pkg"
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_detector_finds_a_cycle_through_a_lazy_import(tmp_path: Path) -> None:
    root = _pkg(tmp_path, {"__init__.py": "", "a/__init__.py": "", "a/x.py": "from pkg.b import y\n",
                           "b/__init__.py": "", "b/y.py": "def f():\n    import pkg.c.z\n",
                           "c/__init__.py": "", "c/z.py": "from pkg.a import x\n", "d.py": "import pkg.a.x\n"})
    g = build_graph(root)
    assert g.cycles() == [["pkg.a.x", "pkg.b.y", "pkg.c.z"]]
    assert g.closure(["pkg.d"]) == {"pkg", "pkg.d", "pkg.a", "pkg.a.x", "pkg.b", "pkg.b.y", "pkg.c", "pkg.c.z"}


def test_detector_resolves_relative_and_from_package_imports(tmp_path: Path) -> None:
    root = _pkg(tmp_path, {"__init__.py": "", "m.py": "from . import n\nfrom .sub import leaf\n",
                           "n.py": "from pkg import m\n", "sub/__init__.py": "", "sub/leaf.py": "",
                           "dyn.py": "__import__('pkg.sub.leaf')\n"})
    g = build_graph(root)
    assert g.edges["pkg.m"] == {"pkg", "pkg.n", "pkg.sub", "pkg.sub.leaf"}
    assert g.edges["pkg.dyn"] == {"pkg", "pkg.sub", "pkg.sub.leaf"}
    assert g.cycles() == [["pkg.m", "pkg.n"]]


def test_device_package_has_no_import_cycle() -> None:
    g = build_graph(DEVICE)
    assert len(g.files) > 30
    assert g.cycles() == []


def test_host_and_sim_have_no_import_cycle() -> None:
    for root in (ROOT / "host" / "fieldlink_host", ROOT / "device" / "sim"):
        g = build_graph(root)
        assert g.files and g.cycles() == [], root


def test_cores_never_import_roles_and_roles_not_each_other() -> None:
    g = build_graph(DEVICE)
    core = ("fieldlink.link", "fieldlink.runtime", "fieldlink.codec", "fieldlink.drivers", "fieldlink.rules",
            "fieldlink.relays", "fieldlink.errors")
    bad = []
    for m, deps in g.edges.items():
        for d in deps:
            role_dep = d.startswith(("fieldlink.gateway", "fieldlink.node")) or d == "fieldlink.main"
            if m.startswith(core) and role_dep:
                bad.append((m, d))
            if m.startswith("fieldlink.gateway") and d.startswith("fieldlink.node"):
                bad.append((m, d))
            if m.startswith("fieldlink.node") and d.startswith("fieldlink.gateway"):
                bad.append((m, d))
    assert bad == []
    # the link core does not know its two sides
    assert not g.edges["fieldlink.link.core"] & {"fieldlink.link.gateway_link", "fieldlink.link.node_link"}
    # main starts a role by name only (fieldlink.main.role_start), so a bundle carries one role
    assert not [d for d in g.edges["fieldlink.main"] if d.startswith(("fieldlink.gateway", "fieldlink.node"))]


def test_no_host_only_module_in_the_device_package() -> None:
    names = {p.name for p in DEVICE.rglob("*.py")}
    assert "replay.py" not in names
    assert all((p.read_text() == "") for p in DEVICE.rglob("__init__.py") if p.parent != DEVICE)
