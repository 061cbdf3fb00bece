"""The package's layers: a module imports only from its own layer and the layers below it (the docstring of
each layer's package says which), so the engine never reaches up into the command line or the studies."""

from __future__ import annotations

import ast
from pathlib import Path

import jvae

PACKAGE = Path(jvae.__file__).resolve().parent
# Lowest first. The root package (the public API, loaded lazily) and `__main__` sit above everything.
LAYERS = [
    {"base"},
    {"data", "trackers"},
    {"modeling", "fast", "kinds"},
    {"evaluation", "use", "runs"},
    {"training", "explore"},
    {"studies"},
    {"api"},
    {"cli"},
]
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}


def _layer(module: str) -> int | None:
    """The layer of a dotted name inside jvae; None for the package root and names outside it."""
    parts = module.split(".")
    if parts[0] != "jvae" or len(parts) < 2:
        return None
    return LAYER_OF.get(parts[1])


def _imports(source: str) -> list[tuple[int, str]]:
    """Every import a module makes, at its top level, under TYPE_CHECKING or inside a function."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def module_violations(module: str, source: str) -> list[str]:
    """The imports of module `module` (dotted, e.g. jvae.base.files) that reach a layer above its own."""
    own = _layer(module)
    if own is None:
        return []
    return [
        f"{module}:{line} imports {name} (layer {other} above its own {own})"
        for line, name in _imports(source)
        if (other := _layer(name)) is not None and other > own
    ]


def violations() -> list[str]:
    found: set[str] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found.update(module_violations(module, path.read_text(encoding="utf-8")))
    return sorted(found)


def test_no_module_imports_a_layer_above_its_own():
    assert violations() == []


def test_every_subpackage_has_a_layer_and_says_what_it_may_import():
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")} - {"__pycache__"}
    assert packages == set(LAYER_OF) - {"api"}
    for name in packages:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text(encoding="utf-8")))
        assert doc and "May import" in doc, f"jvae/{name}/__init__.py does not say what it may import"


def test_the_check_can_fail():
    """A base module that imports the trainer, even inside a function, is reported; one that imports only
    its own layer is not."""
    upward = "def f():\n    from jvae.training.trainer import train\n"
    assert module_violations("jvae.base.probe", upward) == [
        "jvae.base.probe:2 imports jvae.training.trainer (layer 4 above its own 0)",
        "jvae.base.probe:2 imports jvae.training.trainer.train (layer 4 above its own 0)",
    ]
    assert module_violations("jvae.base.probe", "from jvae.base.errors import JvaeError\n") == []
