"""The client's layers import downwards only: no cycle between capture, client, endpoints,
callstate, redaction and the codecs, and none hidden behind a function-level import."""

from __future__ import annotations

import ast
from pathlib import Path

import callproof

ROOT = Path(callproof.__file__).parent
LAYERED = [
    "callproof.redact",
    "callproof.scrub_body",
    "callproof.callstate",
    "callproof.capture",
    "callproof.endpoints",
    "callproof.client",
    "callproof.emulator.replay",
    "callproof.wire.sse",
    "callproof.wire.eventstream",
]


def _path(module: str) -> Path:
    rel = Path(*module.split(".")[1:])
    return (
        ROOT / rel.with_suffix(".py")
        if (ROOT / rel.with_suffix(".py")).exists()
        else ROOT / rel / "__init__.py"
    )


def _imports(module: str) -> tuple[set[str], set[str]]:
    """(module-level, function-level) callproof imports of ``module``."""
    tree = ast.parse(_path(module).read_text(encoding="utf-8"))
    top: set[str] = set()
    nested: set[str] = set()

    def names(node: ast.Import | ast.ImportFrom) -> set[str]:
        if isinstance(node, ast.Import):
            return {a.name for a in node.names}
        base = node.module or ""
        out = {base}
        out.update(f"{base}.{a.name}" for a in node.names)
        return out

    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            top |= names(node)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    nested |= names(inner)

    def ours(found: set[str]) -> set[str]:
        return {m for m in found if m.startswith("callproof") and (m in LAYERED or _is_module(m))}

    return ours(top), ours(nested)


def _is_module(name: str) -> bool:
    parts = name.split(".")[1:]
    if not parts:
        return False
    rel = Path(*parts)
    return (ROOT / rel.with_suffix(".py")).exists() or (ROOT / rel / "__init__.py").exists()


def test_no_function_level_imports_of_our_own_modules() -> None:
    for module in LAYERED:
        _, nested = _imports(module)
        assert not nested, f"{module} imports {sorted(nested)} inside a function"


def test_no_import_cycle_among_the_client_layers() -> None:
    graph = {m: {d for d in _imports(m)[0] if d in LAYERED and d != m} for m in LAYERED}
    # depth-first search for a back edge
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail, node, dep]))
            if dep not in state:
                visit(dep, [*trail, node])
        state[node] = 2

    for module in LAYERED:
        if module not in state:
            visit(module, [])
    assert "callproof.client" not in graph["callproof.capture"]
    assert "callproof.capture" not in graph["callproof.endpoints"]
