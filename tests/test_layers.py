"""The house by domain: models/ is packages that build on each other one way (store,
records, proof, webhooks, erasure, then intake and jobs, then the worker), nothing in
models/ imports app/, no module imports itself round a cycle and no module
of models/ or app/ is over 300 lines (docs/architecture.md draws the layers)."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAYERS = {
    "errors": 0,
    "store": 1,
    "records": 2,
    "proof": 3,
    "webhooks": 4,
    "erasure": 5,
    "intake": 6,
    "jobs": 6,
    "worker": 7,
    "migrations": 8,
    "__init__": 9,
}
"""Each part of models/ by its layer: a module may import its own part and lower layers
only (intake and jobs share one and do not import each other)."""


def module_name(path: pathlib.Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def imports_of(path: pathlib.Path) -> set[str]:
    """Every module `path` imports, wherever in the file (absolute names)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            found.add(node.module)
            # `from models.proof import merkle` imports the module models.proof.merkle
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


SOURCES = {
    module_name(path): path
    for package in ("models", "app")
    for path in (ROOT / package).rglob("*.py")
}
GRAPH = {name: imports_of(path) & SOURCES.keys() for name, path in SOURCES.items()}


def part(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if m.startswith("models")))
def test_a_model_module_imports_its_own_part_and_lower_layers_only(module):
    mine = part(module)
    for imported in GRAPH[module]:
        assert not imported.startswith("app"), f"{module} imports {imported}"
        theirs = part(imported)
        if theirs == mine or imported == "models":
            continue
        assert LAYERS[theirs] < LAYERS[mine], f"{module} imports {imported} against the layers"


def test_no_module_imports_itself_round_a_cycle():
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in done:
            return
        assert module not in visiting, "import cycle: " + " -> ".join([*path, module])
        visiting.add(module)
        for imported in sorted(GRAPH[module]):
            # A package's __init__ re-exports its modules: importing it is not a cycle.
            if imported != module and not module.startswith(f"{imported}."):
                visit(imported, [*path, module])
        visiting.discard(module)
        done.add(module)

    for module in sorted(GRAPH):
        visit(module, [])


MAX_LINES = 300


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_no_module_is_over_300_lines(module):
    lines = len(SOURCES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{SOURCES[module]} has {lines} lines"
