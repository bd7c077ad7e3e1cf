"""House rules the code base keeps: small modules with one job, and layers that import downwards.

- No module of ``gateway/``, ``plugins/`` or ``loadtest/`` passes ``MAX_LINES`` lines: a file
  that grows past it is split by job (see how ``gateway/access/limits/`` or ``gateway/providers/anthropic/``
  are laid out) rather than left to grow.
- The shipped packages (``gateway/``, ``plugins/``, ``loadtest/``) use nothing from ``tests/``:
  no import, no ``-m tests.…`` subprocess and no path into it, so they work from an installed
  wheel. What both need lives in the package or in ``loadtest/``.
- No import cycle among the modules of ``gateway/`` at module level. The graph is read from the
  source (``ast``): imports at module level (class bodies included, ``if TYPE_CHECKING:`` blocks
  excluded) are edges; imports inside functions are not, since they run later — but moving an
  import into a function to get around a cycle hides the cycle rather than removing it, so a
  cycle is broken by moving the shared piece down into a module both sides import.
- Layers import downwards (``LAYERS``): here every import counts, inside functions and under
  ``TYPE_CHECKING`` too, since a lazy or type-only import is still a dependency on the layer
  above. Routing depends on the small ``gateway.core.upstream`` interfaces, not on the proxy
  layer that implements them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHECKED = ("gateway", "plugins", "loadtest")
MAX_LINES = 400


def _modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` under ``root/package``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(tree: ast.Module):
    """The import statements that run when the module is imported."""
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


def _all_imports(tree: ast.Module):
    """Every import statement of the module, wherever it is."""
    return (node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)))


def import_graph(root: Path, package: str, *, everywhere: bool = False) -> dict[str, set[str]]:
    """Module → the modules of ``package`` it imports at module level (``everywhere``: also
    inside functions and under ``TYPE_CHECKING``)."""
    find = _all_imports if everywhere else _module_level_imports
    modules = _modules(root, package)

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges = graph.setdefault(name, set())
        for node in find(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                # ``from pkg import sub`` imports the submodule; ``from mod import name`` the module
                targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in modules else origin for a in node.names]
            for target in targets:
                found = known(target) if target.split(".")[0] == package else None
                if found and found != name:
                    edges.add(found)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One concrete cycle (``[a, b, …, a]``) per strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(component)
    cycles = []
    for component in components:
        first = min(component)
        # shortest way back to ``first`` inside the component
        paths = {first: [first]}
        queue = [first]
        cycle = None
        while queue and cycle is None:
            node = queue.pop(0)
            for child in sorted(graph[node] & component):
                if child == first:
                    cycle = paths[node] + [first]
                    break
                if child not in paths:
                    paths[child] = paths[node] + [child]
                    queue.append(child)
        cycles.append(cycle)
    return sorted(cycles)


def test_no_module_over_max_lines():
    too_long = []
    for package in CHECKED:
        for path in sorted((REPO / package).rglob("*.py")):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_LINES:
                too_long.append(f"{path.relative_to(REPO).as_posix()}: {lines} lines")
    assert not too_long, f"modules over {MAX_LINES} lines (split them by job): {too_long}"


def test_no_module_beside_a_script_is_named_like_a_standard_library_module():
    """Running a script by path puts its folder first on ``sys.path``: a ``loadtest/profile.py``
    once shadowed the standard library's ``profile`` for everything that script imported."""
    import sys

    modules = [path for package in CHECKED for path in sorted((REPO / package).rglob("*.py"))]
    scripts = {path.parent for path in modules if '__name__ == "__main__"' in path.read_text(encoding="utf-8")}
    clashes = [path.relative_to(REPO).as_posix() for path in modules
               if path.parent in scripts and path.stem in sys.stdlib_module_names]
    assert not clashes, clashes


_TESTS_NAME = re.compile(r"^tests(\.|$)")  # a module under tests/, or tests/ as a path component


def test_shipped_packages_use_nothing_from_tests():
    found = []
    for package in CHECKED:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), rel)):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    names = [node.module or ""]
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    names = [node.value]
                else:
                    continue
                found += [f"{rel}:{node.lineno}: {name}" for name in names if _TESTS_NAME.match(name)]
    assert not found, found


def test_no_import_cycles_in_gateway():
    cycles = find_cycles(import_graph(REPO, "gateway"))
    assert not cycles, "module-level import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _gateway_packages_but(*allowed: str) -> tuple[str, ...]:
    """Every top-level package and module of ``gateway`` except ``allowed``."""
    names = {f"gateway.{p.stem}" for p in (REPO / "gateway").iterdir()
             if (p.is_dir() and any(p.glob("*.py"))) or (p.suffix == ".py" and p.stem != "__init__")}
    return tuple(sorted(names - set(allowed)))


# Package → packages it may not import, anywhere in it.
LAYERS = {
    # The lowest layer: config parses and validates files into a snapshot; the features (prompts,
    # chains, plugins, telemetry, cache, routing, access, proxy, …) compile their parts from it.
    "gateway.config": _gateway_packages_but("gateway.config"),
    "gateway.routing": ("gateway.proxy",),
    # The proxy reaches every provider through the registry (gateway.providers.adapter_for), the
    # in-process mock included: no provider is special-cased there.
    # Inbound protocols are pure translators below the proxy, which asks them through ctx.inbound.
    "gateway.inbound": ("gateway.proxy", "gateway.routing", "gateway.access", "gateway.telemetry", "gateway.cache",
                        "gateway.app"),
    "gateway.proxy": ("gateway.providers.mock", "gateway.providers.anthropic", "gateway.providers.azure",
                      "gateway.providers.openai_compat"),
}


def layer_violations(graph: dict[str, set[str]], layers: dict[str, tuple[str, ...]]) -> list[str]:
    """``module -> imported`` for each import ``layers`` forbids."""
    def within(module: str, package: str) -> bool:
        return module == package or module.startswith(package + ".")

    return sorted(f"{module} -> {target}" for module, targets in graph.items() for target in targets
                  for package, forbidden in layers.items() if within(module, package)
                  and any(within(target, f) for f in forbidden))


def test_layers_import_downwards():
    assert {"gateway.prompts", "gateway.chains", "gateway.plugins", "gateway.telemetry", "gateway.cache",
            "gateway.routing", "gateway.access", "gateway.proxy", "gateway.app"} <= set(LAYERS["gateway.config"])
    found = layer_violations(import_graph(REPO, "gateway", everywhere=True), LAYERS)
    assert not found, "imports against the layering (see LAYERS):\n" + "\n".join(found)


def test_the_checks_see_what_they_guard(tmp_path):
    """The graph and the cycle finder on a small package: a module-level cycle through
    ``from pkg import sub`` and a relative import is found; imports inside functions and under
    ``TYPE_CHECKING`` are not edges."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("from .sub import c\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("import pkg.a\n")
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import e\n"
                              "def f():\n    from pkg import e\n")
    (pkg / "e.py").write_text("from pkg.d import f\nclass K:\n    from pkg import a\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.d"] == set()
    assert graph["pkg.e"] == {"pkg.d", "pkg.a"}
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
    # The layering check counts every import, lazy and type-only ones included.
    everywhere = import_graph(tmp_path, "pkg", everywhere=True)
    assert everywhere["pkg.d"] == {"pkg.e"}
    assert layer_violations(everywhere, {"pkg.d": ("pkg.e",), "pkg.sub": ("pkg.b",)}) == ["pkg.d -> pkg.e"]
    assert layer_violations(everywhere, {"pkg.sub": ("pkg",)}) == ["pkg.sub.c -> pkg.a"]
