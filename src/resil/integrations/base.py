"""The contract every integration follows.

An integration is one table of patch :class:`Target` s. :meth:`Integration.instrument`
registers a post-import hook per target module (:mod:`resil.hooks`), so a library is patched
when the application imports it (or at once, if it already has);
:meth:`Integration.uninstrument`
walks the same table backwards and restores only the attributes that still hold our own
wrapper. Both are idempotent. A library version outside the supported range is a logged
skip, never a crash.

Wrappers run resil's decision code through :func:`resil.guard.fail_open` (re-exported
here): if it raises, the fault is counted and logged once and the application's call
proceeds exactly as it would have without resil.
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
import threading
from collections.abc import Callable
from types import FunctionType, MethodType, ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

from .. import _log, hooks
from .._record import dataclass
from ..guard import fail_open

if TYPE_CHECKING:
    from ..topology import Endpoint, Resource

__all__ = ["Integration", "Target", "fail_open", "parse_version"]

log = _log.get("resil.integrations")


@dataclass(frozen=True)
class Target:
    """One attribute to wrap: ``module`` and a dotted ``path`` inside it.

    By default ``wrapper`` has wrapt's signature ``(wrapped, instance, args, kwargs)``: a
    plain function or method gets a plain replacement that calls it (wrapt itself only
    for other attributes, see :func:`_wrapper_call`). With ``method=True`` it is a
    factory that takes the original function and returns its replacement: no tuple and
    dict of arguments, no bound method made per call, for the targets on the
    per-command hot path (a loopback round trip is ~30 µs, and the overhead budget is
    3 %).
    """

    module: str
    path: str
    wrapper: Callable[..., Any]
    method: bool = False


@dataclass
class _Patched:
    owner: Any
    attribute: str
    original: Any
    wrapper: Any


def resolve(module: ModuleType, path: str) -> tuple[Any, str, Any]:
    """The owner of the dotted ``path`` in ``module``, the attribute's name and what the
    owner holds there: for a class, the raw entry of the first class in its MRO that
    defines it (a function, not a bound method; a ``classmethod`` object as it is)."""
    parent: Any = module
    *outer, attribute = path.split(".")
    for name in outer:
        parent = _lookup(parent, name)
    return parent, attribute, _lookup(parent, attribute)


def _lookup(parent: Any, name: str) -> Any:
    if isinstance(parent, type):
        for cls in parent.__mro__:
            if name in cls.__dict__:
                return cls.__dict__[name]
    return getattr(parent, name)


_COROUTINE = 0x80
"""``CO_COROUTINE``: the code flag of an ``async def`` function."""


def _wrapper_call(owner: Any, original: Any,
                  wrapper: Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]) -> Any:
    """A replacement for ``original`` that calls ``wrapper(wrapped, instance, args,
    kwargs)`` as a wrapt ``FunctionWrapper`` would: ``wrapped`` bound to the instance
    and ``instance`` None for a module's function. Plain functions (the methods and
    functions resil patches) get a plain function, an ``async def`` for a coroutine
    function, so that importing wrapt (which imports asyncio) is not the price of
    patching a library; anything else (a ``classmethod``, a builtin) gets wrapt's."""
    if type(original) is not FunctionType:
        import wrapt
        return wrapt.FunctionWrapper(original, wrapper)
    replacement: Callable[..., Any]
    if isinstance(owner, type):
        if original.__code__.co_flags & _COROUTINE:
            async def replacement(self: Any, *args: Any, **kwargs: Any) -> Any:
                return await wrapper(MethodType(original, self), self, args, kwargs)
        else:
            def replacement(self: Any, *args: Any, **kwargs: Any) -> Any:
                return wrapper(MethodType(original, self), self, args, kwargs)
    elif original.__code__.co_flags & _COROUTINE:
        async def replacement(*args: Any, **kwargs: Any) -> Any:
            return await wrapper(original, None, args, kwargs)
    else:
        def replacement(*args: Any, **kwargs: Any) -> Any:
            return wrapper(original, None, args, kwargs)
    return functools.wraps(original)(replacement)


def parse_version(text: str) -> tuple[int, ...]:
    """The leading numeric release of a version string: ``'1.2.4rc1'`` → ``(1, 2, 4)``."""
    match = re.match(r"\d+(?:\.\d+)*", text)
    return tuple(int(p) for p in match.group(0).split(".")) if match else ()


class Integration:
    """Base class of integrations; subclasses fill in the class variables."""

    name: ClassVar[str]
    """Short name, as used in ``RESIL_DISABLED_INTEGRATIONS``."""
    distribution: ClassVar[str]
    """The library's distribution name, for the version check."""
    supported: ClassVar[tuple[tuple[int, ...], tuple[int, ...]]]
    """Supported versions: ``(minimum, maximum-exclusive)``."""
    targets: ClassVar[tuple[Target, ...]]

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._wanted = False
        self._hooked: set[str] = set()
        self._patched: list[_Patched] = []
        self._skipped_reason: str | None = None

    @property
    def patched(self) -> bool:
        """Whether any target is currently wrapped."""
        return bool(self._patched)

    def in_flight(self) -> dict[str, int]:
        """Open transactions and running writes per resource (for heartbeats)."""
        return {}

    def abandon(self, resource: str, address: tuple[str, int]) -> int:
        """The primary of ``resource`` moved away from ``address``: cut every connection
        with a statement still waiting there for its reply, and return how many.

        A demoted primary that was frozen (SIGSTOP, a hung disk) completes such a
        statement when it thaws and answers OK, for a write that exists only there: the
        application must get an error of unknown outcome instead, never a false OK.
        """
        return 0

    def prepare(self, resource: Resource, target: Endpoint) -> int:
        """A planned switch of ``resource`` to ``target`` is about to lock it: queue
        spare connections there (:data:`resil.integrations._spare.PREPARED`), one per
        connection that a held write could need; return how many."""
        return 0

    def instrument(self) -> None:
        """Patch now for imported modules, and on import for the others. Idempotent."""
        with self._lock:
            if self._wanted:
                return
            self._wanted = True
            for module in dict.fromkeys(t.module for t in self.targets):
                if module in sys.modules and not hooks.pending(module):
                    self._on_import(sys.modules[module])
                elif module not in self._hooked:
                    # Hooks stay registered; _on_import checks _wanted, so a hook left
                    # behind by uninstrument() does nothing.
                    hooks.register(module, self._on_import)
                    self._hooked.add(module)

    def uninstrument(self) -> None:
        """Restore every attribute we wrapped, in reverse order. Idempotent."""
        with self._lock:
            self._wanted = False
            for patch in reversed(self._patched):
                if patch.owner.__dict__.get(patch.attribute) is patch.wrapper:
                    setattr(patch.owner, patch.attribute, patch.original)
                else:  # someone wrapped on top of us: leave their chain intact
                    log.warning("resil: %s.%s was re-wrapped by another library; "
                                "left in place", patch.owner.__name__, patch.attribute)
            self._patched.clear()

    def _version_ok(self) -> bool:
        from ._dists import installed_version
        version = installed_version(self.distribution)
        if version is None:
            import importlib.metadata  # an unusual installation: ask it
            try:
                version = importlib.metadata.version(self.distribution)
            except importlib.metadata.PackageNotFoundError:
                return True     # vendored or source checkout: nothing to compare with
        low, high = self.supported
        found = parse_version(version)
        if low <= found < high:
            return True
        if self._skipped_reason is None:
            self._skipped_reason = f"{self.distribution} {version} is outside the supported " \
                f"range >={'.'.join(map(str, low))},<{'.'.join(map(str, high))}"
            log.warning("resil: not instrumenting %s: %s", self.name, self._skipped_reason)
        return False

    def _on_import(self, module: ModuleType) -> None:
        with self._lock:
            if not self._wanted or not self._version_ok():
                return
            done = {(p.owner, p.attribute) for p in self._patched}
            for target in self.targets:
                if target.module != module.__name__:
                    continue
                fail_open(f"{self.name}.instrument", self._wrap, target, done)

    def _wrap(self, target: Target, done: set[tuple[Any, str]]) -> None:
        owner, attribute, original = resolve(importlib.import_module(target.module),
                                             target.path)
        if (owner, attribute) in done:
            return
        wrapper: Any
        if target.method:
            wrapper = functools.wraps(original)(target.wrapper(original))
        else:
            wrapper = _wrapper_call(owner, original, target.wrapper)
        setattr(owner, attribute, wrapper)
        self._patched.append(_Patched(owner, attribute, original, wrapper))
