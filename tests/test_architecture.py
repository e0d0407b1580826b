"""The layers of the code base, checked from the source: every import (at module level or inside a
function) points down or sideways, never up; no import cycles between modules; only the command layer
imports typer; every package says its job in its docstring (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

# lowest first; a module may import its own layer and the layers below it
LAYERS = [
    ("memories", "adapters"),  # storage and environments: import nothing of jitrl_cli
    ("jitrl_cli.errors", "jitrl_cli.paths"),
    ("jitrl_cli.llm",),
    ("jitrl_cli.core",),
    ("jitrl_cli.runs",),
    ("jitrl_cli.commands", "jitrl_cli.__main__"),
]
PACKAGES = ("jitrl_cli", "adapters", "memories")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _layer(module: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def _imports(module: str) -> set[str]:
    """The project modules ``module`` imports anywhere in its source (``from x import y`` counts y if a module)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module and name.split(".")[0] in PACKAGES and name != "jitrl_cli":
                found.add(name)
    return found


def test_every_module_has_a_layer():
    for module in MODULES:
        if module != "jitrl_cli":
            _layer(module)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "jitrl_cli"))
def test_imports_point_down_or_sideways(module):
    upward = sorted(m for m in _imports(module) if _layer(m) > _layer(module))
    assert not upward, f"{module} imports {upward} from a higher layer"


def test_no_import_cycles():
    graph = {m: _imports(m) for m in MODULES if m != "jitrl_cli"}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(nxt_ := node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " → ".join(cycle))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[nxt_] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_only_the_command_layer_imports_typer():
    users = sorted(m for m, path in MODULES.items()
                   if any(isinstance(n, (ast.Import, ast.ImportFrom)) and "typer" in
                          ([a.name.split(".")[0] for a in n.names] if isinstance(n, ast.Import) else [(n.module or "").split(".")[0]])
                          for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))))
    assert users and all(m.startswith("jitrl_cli.commands") for m in users), users


def test_every_package_states_its_job():
    for module, path in MODULES.items():
        if path.name == "__init__.py":
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
            assert doc and len(doc.split()) >= 8, f"{module} needs a docstring saying its job"
