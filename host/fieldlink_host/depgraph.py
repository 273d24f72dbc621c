"""Import graph of a Python package read from its source (``ast``, nothing is imported or run).

Used by ``fieldlink build`` to ship only the modules a board's role imports (docs/deploy.md "Per-role
bundles") and by the tests that keep device/ and host/ free of import cycles. Every import statement
counts, wherever it is (module level, inside a function, in a ``try``), and so does
``__import__("a.b")`` with a literal name: a lazy import is still a dependency of the bundle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fieldlink_host.errors import FieldlinkError


@dataclass
class Graph:
    """Modules of one package (dotted names, ``pkg`` itself for ``pkg/__init__.py``) and their imports
    of other modules of the same package."""

    root: Path  # the package directory
    name: str  # the package name (its directory name)
    files: dict[str, Path] = field(default_factory=dict)
    edges: dict[str, set[str]] = field(default_factory=dict)

    def closure(self, entries: Iterable[str]) -> set[str]:
        """Every module reachable from ``entries``, plus the ``__init__`` of every package on the way."""
        seen: set[str] = set()
        todo = [e for e in entries if e in self.files]
        while todo:
            m = todo.pop()
            if m in seen:
                continue
            seen.add(m)
            todo.extend(self.edges.get(m, ()))
            parts = m.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                if parent in self.files:
                    todo.append(parent)
        return seen

    def cycles(self) -> list[list[str]]:
        """The import cycles: strongly connected components with more than one module (or a module
        importing itself), each sorted, the list sorted."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on: set[str] = set()
        out: list[list[str]] = []
        counter = [0]

        def visit(v: str) -> None:  # Tarjan; packages here are small enough for recursion
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in sorted(self.edges.get(v, ())):
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1 or v in self.edges.get(v, ()):
                    out.append(sorted(comp))

        for v in sorted(self.files):
            if v not in index:
                visit(v)
        return sorted(out)


def module_name(root: Path, name: str, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [name, *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_names(tree: ast.AST, modname: str, is_pkg: bool) -> list[tuple[str, list[str]]]:
    """(module, [names imported from it]) for every import in the tree, relative ones resolved."""
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out.append((a.name, []))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = modname.split(".")
                keep = len(parts) - node.level + (1 if is_pkg else 0)
                base = ".".join(parts[:keep] + ([base] if base else []))
            out.append((base, [a.name for a in node.names]))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            out.append((node.args[0].value, []))
    return out


def _targets(mod: str, names: list[str], known: dict[str, Path]) -> set[str]:
    """The package modules one import statement loads: the module itself (and its parents), and for
    ``from pkg import name`` the submodule ``pkg.name`` when there is one."""
    found: set[str] = set()
    parts = mod.split(".")
    for i in range(1, len(parts) + 1):
        m = ".".join(parts[:i])
        if m in known:
            found.add(m)
    for n in names:
        sub = mod + "." + n
        if sub in known:
            found.add(sub)
    return found


def build_graph(root: Path | str, extra: Iterable[Path] = ()) -> Graph:
    """The import graph of the package at ``root`` (every ``*.py`` below it). ``extra`` files (an app's
    modules outside the package) are parsed too and appear under their file stem, so their imports
    can seed a closure."""
    root = Path(root)
    name = root.name
    g = Graph(root, name)
    for p in sorted(root.rglob("*.py")):
        if "__pycache__" in p.parts:
            continue
        g.files[module_name(root, name, p)] = p
    parsed = [(m, p) for m, p in g.files.items()] + [(p.stem, p) for p in extra]
    for m, p in parsed:
        try:
            tree = ast.parse(p.read_text(encoding="utf-8"), filename=str(p))
        except (SyntaxError, UnicodeDecodeError, OSError) as exc:
            raise FieldlinkError(f"cannot read the module's imports: {exc}", where=str(p)) from None
        deps: set[str] = set()
        for mod, names in _imported_names(tree, m, p.name == "__init__.py"):
            deps |= _targets(mod, names, g.files)
        deps.discard(m)
        g.edges[m] = deps
    return g
