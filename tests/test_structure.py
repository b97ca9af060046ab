"""The shape of the code: modules import each other without a circle, each has a name of its own,
and the simulator stands alone."""

from __future__ import annotations

import ast
from collections import Counter

from harness.runner import ROOT


def _imports(package: str) -> dict[str, set[str]]:
    """Each module of ``package`` and the modules of ``package`` it imports (at any depth of its code)."""
    graph: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's own package
                    parts = name.split(".")[: len(name.split(".")) - node.level + (path.name == "__init__.py")]
                    base = ".".join([*parts, *([base] if base else [])])
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
        graph[name] = {m for m in found if m.split(".")[0] == package and m != name}
    return {name: {m for m in deps if m in graph} for name, deps in graph.items()}


def test_no_module_of_the_crawler_imports_itself_back():
    graph = _imports("adcrawler")
    # A package's __init__ importing its own modules is how a package is built, not a circle.
    def deps(name: str) -> set[str]:
        return {m for m in graph[name] if not m.startswith(name + ".")}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(m == goal or (m not in seen and not seen.add(m) and reaches(m, goal, seen)) for m in deps(start))

    circles = sorted(name for name in graph if reaches(name, name, set()))
    assert circles == [], circles


def test_each_module_has_a_name_of_its_own():
    names = Counter(path.name for path in (ROOT / "adcrawler").rglob("*.py") if path.name != "__init__.py")
    assert [name for name, count in names.items() if count > 1] == []


def test_the_simulator_depends_on_nothing_of_the_tests_or_the_harness():
    for path in (ROOT / "mock_api").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.split(".")[0] in ("harness", "tests", "adcrawler", "bench")], path
