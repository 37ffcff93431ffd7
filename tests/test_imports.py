"""No import cycle among editrisk's modules (module-level imports; imports in functions are lazy).

A cycle makes the import order matter and a module half-initialised when its twin reads it;
the CLI had one (cli.py <-> cli_*.py). This walks the source with `ast`, so it imports nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "editrisk"

# Cycles known in files being rewritten (issue 14), each as the set of its modules. Empty: add
# one only with the issue that removes it.
KNOWN_CYCLES: list[frozenset[str]] = []


def module_names(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of `package` under `src`: dotted name -> file (packages by their __init__)."""
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported: top level, in if/try/with and class bodies, not
    in functions nor under `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                found += _module_level_imports(node.body)
            found += _module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                found += _module_level_imports(block)
            for handler in node.handlers:
                found += _module_level_imports(handler.body)
        elif isinstance(node, ast.With | ast.ClassDef):
            found += _module_level_imports(node.body)
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> editrisk modules it imports at module level. `from a.b import c` points at
    `a.b.c` when that is a module, else at `a.b`."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        targets: set[str] = set()
        for node in _module_level_imports(ast.parse(path.read_text(), str(path)).body):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
                continue
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path a -> ... -> a) per strongly connected component with a loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan; editrisk's graph is far too shallow for the recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(comp, graph) for comp in components]


def _cycle_in(comp: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest path from the component's first module back to itself (breadth first)."""
    start = min(comp)
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle in component {sorted(comp)}")


def test_no_import_cycle() -> None:
    cycles = [c for c in find_cycles(import_graph(module_names())) if set(c) not in KNOWN_CYCLES]
    assert not cycles, "import cycle(s):\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_finds_a_planted_cycle(tmp_path: Path) -> None:
    """The check can fail: a package whose submodule imports back through its __init__."""
    pkg = tmp_path / "pkg"
    (pkg / "cli").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cli" / "__init__.py").write_text("from pkg.cli import runs\nconsole = 1\n")
    (pkg / "cli" / "runs.py").write_text("from pkg.cli import console\n")
    (pkg / "cli" / "_common.py").write_text("import pkg\n")
    (pkg / "cli" / "edit.py").write_text(
        "from ._common import x\ndef f():\n    from pkg.cli import console\n"
    )
    graph = import_graph(module_names(tmp_path, "pkg"))
    assert graph["pkg.cli"] == {"pkg.cli.runs"}
    assert graph["pkg.cli.edit"] == {"pkg.cli._common"}  # relative; the lazy import is no edge
    assert find_cycles(graph) == [["pkg.cli", "pkg.cli.runs", "pkg.cli"]]


def test_every_public_name_imports_from_the_package() -> None:
    """`from editrisk import X` for every name of `__all__`, each from the module `_LAZY` names."""
    import importlib

    import editrisk

    assert set(editrisk.__all__) - {"__version__"} == set(editrisk._LAZY)
    for name in editrisk.__all__:
        value = getattr(editrisk, name)
        if name != "__version__":
            assert value is getattr(importlib.import_module(editrisk._LAZY[name]), name)
    ns: dict[str, object] = {}
    exec("from editrisk import Delta, edit, load_model, __version__", ns)  # noqa: S102
    assert ns["Delta"] is editrisk.Delta and isinstance(ns["__version__"], str)


def test_import_and_cli_app_do_not_import_torch() -> None:
    """`import editrisk` and building the CLI (what `editrisk --help` does) stay light: torch,
    transformers and numpy load only in the commands that need them. A fresh interpreter, so
    what other tests imported does not count."""
    import subprocess
    import sys

    code = (
        "import sys, editrisk, editrisk.cli\n"
        "import typer.main\n"
        "typer.main.get_command(editrisk.cli.app)\n"
        "print(','.join(m for m in ('torch', 'transformers', 'numpy', 'safetensors')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported at startup: {out.stdout.strip()}"
