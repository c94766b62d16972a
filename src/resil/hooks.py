"""Post-import hooks: run a function right after a module is imported.

This is the mechanism of wrapt's ``register_post_import_hook`` — a finder on
``sys.meta_path`` that wraps the real loader of a watched module — in a form that
imports nothing at start-up. ``import wrapt`` pulls in ``asyncio`` (about 50 ms on a
small machine) and ``importlib.metadata``; resil imports wrapt only when a library it
patches is imported, so a program that never uses one pays nothing for it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

Hook = Callable[[ModuleType], None]

_hooks: dict[str, list[Hook]] = {}
_lock = threading.RLock()
_searching = threading.local()
#: Watched modules whose import is under way (their hooks run when it completes).
_loading: set[str] = set()


def register(name: str, hook: Hook) -> None:
    """Call ``hook(module)`` once ``name`` is imported: at once if it already is, and
    when its import completes if it is being imported now (a hook registered by another
    hook of a module that ``name`` is importing, for example)."""
    with _lock:
        _install()
        _hooks.setdefault(name, []).append(hook)
        module = sys.modules.get(name)
        if name in _loading:
            return          # its loader runs every hook, this one too, once it is done
    if module is not None:
        hook(module)


def pending(name: str) -> bool:
    """Whether ``name`` is being imported now and :func:`register` will run a hook
    for it when its import completes (it is in ``sys.modules``, but not whole yet)."""
    return name in _loading


def _install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def _run(module: ModuleType) -> None:
    done = 0
    while True:             # hooks registered by these hooks run too
        with _lock:
            hooks = _hooks.get(module.__name__, ())
            if done >= len(hooks):
                return
            hook = hooks[done]
        done += 1
        hook(module)        # hooks guard themselves (fail-open); they never raise


class _Finder:
    """Finds nothing itself: it wraps the loader the other finders return."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname not in _hooks or getattr(_searching, "name", None) == fullname:
            return None
        _searching.name = fullname      # the other finders may recurse into us
        try:
            spec = _find(self, fullname, path, target)
        finally:
            _searching.name = None
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _Loader(spec.loader)      # type: ignore[assignment]
        return spec


def _find(skip: object, fullname: str, path: Sequence[str] | None,
          target: ModuleType | None) -> ModuleSpec | None:
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if finder is skip or find is None:
            continue
        spec: ModuleSpec | None = find(fullname, path, target)
        if spec is not None:
            return spec
    return None


class _Loader:
    """Delegates to the real loader, then runs the hooks and steps out of the way."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        result: ModuleType | None = self.loader.create_module(spec)
        return result

    def exec_module(self, module: ModuleType) -> None:
        # The module sees its real loader, as if we had never been there.
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        with _lock:
            _loading.add(module.__name__)
        try:
            self.loader.exec_module(module)
            _run(module)
        finally:
            with _lock:
                _loading.discard(module.__name__)
