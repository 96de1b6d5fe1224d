"""The project's import graph (every import, including those inside functions): no cycles, layers respected.

Layers: ``editworld`` is the ground floor (it may use the app's utilities in ``editrl`` but no other package);
nothing but the CLI / app imports ``policy``; ``reward``, ``rollout`` and ``curation`` never import ``policy``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("editrl", "editworld", "reward", "rollout", "policy", "curation")
APP = {"editrl.cli", "editrl.demo", "editrl.gpu_check", "editrl.gpu_check_editor"}  # the shell: may import anything


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            mods[name] = path
    return mods


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    """The project module an imported dotted name refers to (``a.b.c`` may be module ``a.b`` + attribute ``c``)."""
    while name:
        if name in mods:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """module -> project modules it imports anywhere in its body."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in node.names] + [base]
            for n in names:
                target = _resolve(n, mods)
                if target and target != mod:
                    graph[mod].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_walker_sees_function_level_imports():
    graph = import_graph()
    assert "rollout.adapters" in graph["rollout.registry"]  # imported inside _load_rl_run only
    assert "editworld.oracle" in graph["rollout.held_out"]


def test_no_import_cycles():
    assert _cycles(import_graph()) == []


def test_nothing_below_the_app_imports_policy():
    bad = [(m, t) for m, ts in import_graph().items() for t in ts
           if t.split(".")[0] == "policy" and m.split(".")[0] != "policy" and m not in APP]
    assert bad == []


def test_editworld_imports_no_upper_package():
    upper = {"reward", "rollout", "policy", "curation"}
    bad = [(m, t) for m, ts in import_graph().items() if m.split(".")[0] == "editworld" for t in ts
           if t.split(".")[0] in upper or t in APP]
    assert bad == []


def test_no_design_file_outside_the_repository_is_cited():
    cited = "DESIGN" + ".md"  # spelled apart so this file does not cite it either
    hits = []
    for path in [*ROOT.glob("*.md"), *ROOT.glob("docs/**/*.md"), *ROOT.glob("configs/**/*"),
                 *(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*") if p.suffix in (".py", ".md", ".yaml"))]:
        if path.is_file() and cited in path.read_text(errors="replace"):
            hits.append(str(path.relative_to(ROOT)))
    assert hits == []


def test_long_source_files_say_why():
    long = []
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            lines = path.read_text().splitlines()
            if len(lines) > 420 and not any("long:" in line for line in lines[:3]):
                long.append(f"{path.relative_to(ROOT)} ({len(lines)} lines)")
    assert long == []
