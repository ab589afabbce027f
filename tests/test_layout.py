"""The package's shape: no module imports itself back through others."""

from __future__ import annotations

import grimp


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Groups of modules that import each other in a ring (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    rings: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            ring = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                ring.append(member)
                if member == module:
                    break
            if len(ring) > 1:
                rings.append(sorted(ring))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return rings


def test_the_package_has_no_import_cycles():
    assert _cycles(grimp.build_graph("detector")) == []


def test_the_cycle_check_finds_a_ring(tmp_path, monkeypatch):
    package = tmp_path / "ringpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from ringpkg import b\n")
    (package / "b.py").write_text("from ringpkg import c\n")
    (package / "c.py").write_text("from ringpkg import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _cycles(grimp.build_graph("ringpkg")) == [["ringpkg.a", "ringpkg.b", "ringpkg.c"]]
