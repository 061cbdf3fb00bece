"""Lists the import circles among jvae's modules: each strongly connected group of the graph whose edges
are the imports a module makes at its top level, including those made only for type checkers (under
`if TYPE_CHECKING:`), which a circle of types still couples. `--lazy` also counts imports inside functions.

Run from the repository root: `python tools/import_cycles.py`; it prints each circle, or `no import circles`.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

PACKAGE = "jvae"


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _top_level(tree: ast.Module, lazy: bool) -> list[ast.Import | ast.ImportFrom]:
    if lazy:
        return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    found: list[ast.Import | ast.ImportFrom] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):  # `if TYPE_CHECKING:` and its else
            found += [n for n in node.body + node.orelse if isinstance(n, (ast.Import, ast.ImportFrom))]
    return found


def edges(known: dict[str, Path], lazy: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _top_level(ast.parse(path.read_text()), lazy):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base])
                    base = base.rstrip(".")
                targets = [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                if target.startswith(PACKAGE):
                    resolved = _resolve(target, known)
                    if resolved and resolved != name:
                        graph[name].add(resolved)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lazy", action="store_true", help="also count imports inside functions")
    args = parser.parse_args()
    graph = edges(modules(Path.cwd()), args.lazy)
    found = circles(graph)
    for group in found:
        inside = set(group)
        print(f"circle of {len(group)}:")
        for member in group:
            print(f"  {member} -> {', '.join(sorted(graph[member] & inside))}")
    if not found:
        print("no import circles")


if __name__ == "__main__":
    main()
