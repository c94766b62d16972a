"""Post-import hooks: each runs once, on the whole module, whenever it is registered."""

from __future__ import annotations

import importlib
import sys
import uuid

import pytest

from resil import hooks


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A fresh package ``<name>`` whose ``__init__`` imports ``<name>.inner`` and only
    then defines ``LATE``: while ``inner`` is imported, the package is not whole."""
    name = f"pkg_{uuid.uuid4().hex[:8]}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("from . import inner\nLATE = 1\n")
    (root / "inner.py").write_text("VALUE = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        del sys.modules[module]


def test_a_hook_runs_once_on_import_or_at_once_if_imported(package):
    seen: list[str] = []
    hooks.register(f"{package}.inner", lambda m: seen.append(f"inner {m.VALUE}"))
    importlib.import_module(package)
    assert seen == ["inner 2"]
    hooks.register(package, lambda m: seen.append(f"package {m.LATE}"))     # at once
    importlib.import_module(package)                                        # not again
    assert seen == ["inner 2", "package 1"]


def test_a_hook_for_a_module_being_imported_runs_when_it_is_whole(package):
    """The hook of ``inner`` registers one for the package, which is importing ``inner``
    and so is in ``sys.modules`` without ``LATE`` yet: that hook runs once the package is
    whole (called at once, it saw half a module; an integration loaded by the first of
    its modules, as the agent does, patched nothing then)."""
    seen: list[object] = []

    def on_package(module):
        seen.append(("package", hasattr(module, "LATE")))

    def on_inner(module):
        seen.append(("pending", hooks.pending(package), hooks.pending(f"{package}.inner")))
        hooks.register(package, on_package)

    hooks.register(package, lambda m: seen.append(("first", hasattr(m, "LATE"))))
    hooks.register(f"{package}.inner", on_inner)
    importlib.import_module(package)
    assert seen == [("pending", True, True), ("first", True), ("package", True)]
    assert not hooks.pending(package)


def test_a_hook_registered_by_a_hook_of_the_same_module_runs_too(package):
    seen: list[str] = []

    def first(module):
        seen.append("first")
        hooks.register(package, lambda m: seen.append("added"))

    hooks.register(package, first)
    importlib.import_module(package)
    assert seen == ["first", "added"]
