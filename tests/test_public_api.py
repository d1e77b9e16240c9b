"""Every module's ``__all__`` is exactly its public surface: what it defines without a leading
underscore, no more and no less."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import callproof

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(callproof.__path__, prefix="callproof.")
    if not info.name.endswith("__main__")
)


def _defined_here(module: ModuleType) -> set[str]:
    names = set()
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if (
            inspect.isclass(value) or inspect.isfunction(value)
        ) and value.__module__ == module.__name__:
            names.add(name)
    return names


@pytest.mark.parametrize("name", MODULES)
def test_all_matches_public_surface(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        assert not _defined_here(module), f"{name} defines public names but has no __all__"
        return
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not have: {missing}"
    unlisted = _defined_here(module) - set(exported)
    assert not unlisted, f"{name} defines public names missing from __all__: {sorted(unlisted)}"
