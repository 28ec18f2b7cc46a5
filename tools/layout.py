"""The package's import graph, and its floors drawn for the docs' layout page.

    python tools/layout.py                      # markdown: a mermaid diagram of the parts, then a table
    python tools/layout.py --modules            # the same, one node per module
    python tools/layout.py --source OTHER/src   # another checkout's package

The graph is read from the source with ``ast``, without importing it. Every ``import`` statement
counts, at any depth: imports inside functions (the lazy ones) and under ``if TYPE_CHECKING:``
included, relative imports resolved. An import of ``a.b.c`` also depends on the packages ``a.b``
and ``a`` above it, because Python runs their ``__init__`` first (``import_graph`` says when).

A *part* is a subpackage of ``maskgit`` (``models``, ``sampling``, ...) or one of its top-level
modules (``pipeline``, ``configs``, ...; ``maskgit`` itself is the package's ``__init__``). Each
part stands on a *floor*: floor 0 imports no other part, and every other part stands one floor above
the highest part it imports. Parts that import each other in a circle share a floor, and the
drawing marks them. ``tests/test_imports.py`` holds the package to this graph: no cycle, and the
layers it states.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src"
PACKAGE = "maskgit"

Graph = dict[str, set[str]]


def find_modules(source: Path = SOURCE, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of ``package`` under ``source``: dotted name → file (a package is named after
    itself, its file is its ``__init__.py``)."""
    modules = {}
    for path in sorted((source / package).rglob("*.py")):
        parts = list(path.relative_to(source).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _resolve_relative(module: str, path: Path, level: int, target: str | None) -> str:
    """The absolute name that ``from {'.' * level}{target} import ...`` in ``module`` refers to."""
    base = module.split(".")
    # In a package's __init__ one dot is the package itself; in a plain module, its parent.
    keep = len(base) - level + (1 if path.name == "__init__.py" else 0)
    if keep < 1:
        raise ValueError(f"{path}: relative import beyond the top-level package")
    return ".".join(base[:keep] + ([target] if target else []))


def imports_of(module: str, path: Path) -> set[tuple[str, str | None]]:
    """Every import statement of ``module`` (the file ``path``), at any depth, relative imports
    resolved: ``import a.b`` gives ``("a.b", None)``, ``from a import b`` gives ``("a", "b")``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[tuple[str, str | None]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_relative(module, path, node.level, node.module) if node.level else node.module
            assert base is not None  # ``from . import x`` has a level
            found.update((base, None if alias.name == "*" else alias.name) for alias in node.names)
    return found


def _ancestors(name: str) -> list[str]:
    """``a.b.c`` → ``["a", "a.b"]``."""
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts))]


def import_graph(modules: Mapping[str, Path] | None = None) -> Graph:
    """module → the modules of the package it imports.

    ``import a.b`` and ``from a import b`` (``b`` a submodule) import the module ``a.b``; ``from a
    import name`` imports ``a``. Each also runs the ``__init__`` of the packages above, unless the
    importing module is inside them (they are already running then); a module that takes a name
    from its own package, though, depends on that package's ``__init__``.
    """
    modules = find_modules() if modules is None else modules
    graph: Graph = {}
    for module, path in modules.items():
        own = set(_ancestors(module))
        targets: set[str] = set()
        for base, name in imports_of(module, path):
            target = f"{base}.{name}" if name is not None and f"{base}.{name}" in modules else base
            targets.update(parent for parent in _ancestors(target) if parent in modules and parent not in own)
            if target in modules:
                targets.add(target)
        graph[module] = targets - {module}
    return graph


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None when it has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif child not in state:
                state[child] = 1
                path.append(child)
                stack.append(iter(sorted(graph.get(child, ()))))
    return None


def part_of(module: str) -> str:
    """``maskgit.models.tokenizer`` → ``models``; ``maskgit.pipeline`` → ``pipeline``; the
    package's ``__init__`` → ``maskgit``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def collapse(graph: Mapping[str, Iterable[str]], key: Callable[[str], str] = part_of) -> Graph:
    """The graph between groups of modules (``key`` names a module's group), without self-loops."""
    grouped: Graph = {}
    for module, targets in graph.items():
        group = key(module)
        grouped.setdefault(group, set()).update(key(t) for t in targets if key(t) != group)
    return grouped


def circles(graph: Mapping[str, Iterable[str]]) -> list[set[str]]:
    """The strongly connected components of ``graph`` with more than one node: the groups of
    nodes that import each other in a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the graphs here are a few dozen nodes deep
        index[node] = low[node] = len(index)
        stack.append(node)
        for child in sorted(graph.get(node, ())):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def floors(graph: Mapping[str, Iterable[str]]) -> dict[str, int]:
    """Each node's floor: 0 for a node that imports no other, else one above the highest node it
    imports; the nodes of a circle share one floor."""
    leader = {node: node for node in graph}
    for component in circles(graph):
        first = min(component)
        leader.update({node: first for node in component})
    condensed = collapse(graph, key=lambda node: leader[node])
    memo: dict[str, int] = {}

    def floor(node: str) -> int:
        if node not in memo:
            memo[node] = 1 + max((floor(target) for target in condensed.get(node, ())), default=-1)
        return memo[node]

    return {node: floor(leader[node]) for node in graph}


def line_counts(modules: Mapping[str, Path], key: Callable[[str], str] = part_of) -> dict[str, int]:
    """Lines of source per group of modules."""
    counts: dict[str, int] = {}
    for module, path in modules.items():
        counts[key(module)] = counts.get(key(module), 0) + len(path.read_text(encoding="utf-8").splitlines())
    return counts


def _node_id(name: str) -> str:
    return "n_" + name.replace(".", "_")


def render(modules: Mapping[str, Path], per_module: bool = False) -> str:
    """Markdown: a mermaid flowchart with one box per floor (the highest on top) and an arrow per
    import between parts (or modules), arrows in a circle in red; then a table of the floors."""
    key: Callable[[str], str] = (lambda module: module) if per_module else part_of
    module_graph = import_graph(modules)
    graph = collapse(module_graph, key)
    floor_of = floors(graph)
    in_circle = {node for component in circles(graph) for node in component}
    lines_of = line_counts(modules, key)
    sizes = {name: sum(1 for m in modules if key(m) == name) for name in graph}
    out = ["```mermaid", "flowchart TB"]
    for floor in sorted(set(floor_of.values()), reverse=True):
        out.append(f'    subgraph floor_{floor}["floor {floor}"]')
        for name in sorted(n for n in graph if floor_of[n] == floor):
            detail = f"{lines_of[name]} lines" + (f", {sizes[name]} modules" if sizes[name] > 1 else "")
            out.append(f'        {_node_id(name)}["{name}<br/>{detail}"]')
        out.append("    end")
    red = []
    edges = [(name, target) for name in sorted(graph) for target in sorted(graph[name])]
    for number, (name, target) in enumerate(edges):
        out.append(f"    {_node_id(name)} --> {_node_id(target)}")
        if name in in_circle and target in in_circle and floor_of[name] == floor_of[target]:
            red.append(str(number))
    if red:
        out.append(f"    linkStyle {','.join(red)} stroke:#d00,stroke-width:2px")
    out += ["```", ""]
    for component in circles(graph):
        out += [f"**Import cycle** between {', '.join(sorted(component))} (the red arrows).", ""]
    if not per_module:
        for component in circles(module_graph):
            if len({key(module) for module in component}) == 1:  # inside one part: no arrow shows it
                out += [f"**Import cycle** inside `{key(min(component))}`: {', '.join(sorted(component))}.", ""]
    out += ["| floor | part | lines | imports |", "|---|---|---|---|"]
    for name in sorted(graph, key=lambda n: (-floor_of[n], n)):
        imports = ", ".join(sorted(graph[name])) or "—"
        out.append(f"| {floor_of[name]} | `{name}` | {lines_of[name]} | {imports} |")
    out += ["", f"{len(modules)} modules, {sum(lines_of.values())} lines. An arrow points from a part to a part it "
            "imports; floor 0 imports no other part, and every other part stands one floor above the highest one it "
            "imports."]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules", action="store_true", help="one node per module instead of per part")
    parser.add_argument("--source", type=Path, default=SOURCE,
                        help="the folder that holds the maskgit package (default: this checkout's src)")
    args = parser.parse_args(argv)
    if not (args.source / PACKAGE / "__init__.py").is_file():
        parser.error(f"{args.source}: no {PACKAGE} package there")
    print(render(find_modules(args.source), per_module=args.modules))
    return 0


if __name__ == "__main__":
    sys.exit(main())
