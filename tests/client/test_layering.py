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


# --- the whole package ---------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = ["callproof", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


def _resolve(name: str) -> str | None:
    """The callproof module ``name`` (``callproof.x.y`` or ``callproof.x.y.attr``) loads."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in MODULES:
            return ".".join(parts)
        parts.pop()
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(module: str) -> set[str]:
    """The callproof modules ``module`` imports when it is imported (``TYPE_CHECKING`` blocks
    excluded, function bodies excluded), with the packages each import runs on the way."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def walk(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                if not _is_type_checking(node):
                    walk(node.body)
                walk(node.orelse)
            elif isinstance(node, ast.Try):
                walk(node.body)
                for handler in node.handlers:
                    walk(handler.body)
                walk(node.orelse)
                walk(node.finalbody)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)

    walk(ast.parse(path.read_text(encoding="utf-8")).body)
    deps: set[str] = set()
    for name in found:
        if not name.startswith("callproof"):
            continue
        resolved = _resolve(name)
        if resolved is None:
            continue
        # importing callproof.a.b runs callproof.a's __init__ first
        parts = resolved.split(".")
        deps.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
    return {d for d in deps if d != module and not module.startswith(d + ".")}


GRAPH = {m: _runtime_imports(m) for m in MODULES}


def _reachable(start: str) -> dict[str, str | None]:
    """Every module ``start`` loads at import time, each with the module that imported it."""
    parent: dict[str, str | None] = {start: None}
    todo = [start]
    while todo:
        node = todo.pop()
        for dep in sorted(GRAPH[node]):
            if dep not in parent:
                parent[dep] = node
                todo.append(dep)
    return parent


def _chain(parent: dict[str, str | None], end: str) -> str:
    trail = [end]
    while (up := parent[trail[-1]]) is not None:
        trail.append(up)
    return " -> ".join(reversed(trail))


def test_no_import_cycle_anywhere_in_the_package() -> None:
    """With function-level imports out of the picture, no module reaches itself."""
    for module in sorted(GRAPH):
        for dep in sorted(GRAPH[module]):
            parent = _reachable(dep)
            assert module not in parent, f"import cycle: {module} -> {_chain(parent, module)}"


def test_resilience_never_imports_the_configuration_layer() -> None:
    """probe.config parses routes with resilience.policy; resilience must not reach back (a
    ``TYPE_CHECKING`` import for an annotation is fine: it never runs)."""
    for module in sorted(m for m in MODULES if m.startswith("callproof.resilience")):
        parent = _reachable(module)
        assert "callproof.probe.config" not in parent, _chain(parent, "callproof.probe.config")
    config = _reachable("callproof.probe.config")
    assert "callproof.resilience.policy" in config  # imported at module level


#: Modules whose own-package imports are all at module level (the layers a cycle hid behind).
NO_NESTED_IMPORTS = [
    *LAYERED,
    "callproof.probe.config",
    "callproof.probe.launch",
    "callproof.probe.rebuild",
    "callproof.probe.rundir",
    "callproof.single_call",
    "callproof.resilience",
    "callproof.resilience.policy",
    "callproof.resilience.measured",
    "callproof.resilience.routes",
    "callproof.resilience.configured",
    "callproof.targets",
    "callproof.transforms",
    "callproof.scenarios",
    "callproof.dialects",
    "callproof.dialects.base",
]


def test_no_function_level_imports_in_the_config_and_resilience_layers() -> None:
    for module in NO_NESTED_IMPORTS:
        _, nested = _imports(module)
        assert not nested, f"{module} imports {sorted(nested)} inside a function"
        assert "__getattr__" not in {
            n.name
            for n in ast.parse(_path(module).read_text(encoding="utf-8")).body
            if isinstance(n, ast.FunctionDef)
        }, f"{module} hides an import behind a module __getattr__"
