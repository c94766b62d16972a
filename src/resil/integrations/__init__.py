"""One module per patched library; each knows only its library and resil's core.

Integrations are found through the entry-point group ``resil.integrations``
(:func:`discover`), so a third party adds one by declaring an entry point.
``_tracking`` (driver connections and their resources) and ``_http`` (what the HTTP
clients share) are helpers of the integrations, not integrations.
"""

from __future__ import annotations

import importlib
import sys
import threading

from .. import _log, counters
from ._dists import entry_points, installed_version

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .base import Integration

log = _log.get("resil.integrations")

__all__ = ["GROUP", "WATCHES", "Deferred", "discover", "discover_deferred", "entry_points",
           "installed_version"]

GROUP = "resil.integrations"


#: The modules each of resil's own integrations patches (its ``targets``; a test keeps
#: the two the same). The agent loads such an integration's module only once one of
#: them is imported (:class:`Deferred`): a process pays for what it uses. Integrations of
#: other distributions are loaded at start, as their targets are not known before.
WATCHES: dict[str, tuple[str, ...]] = {
    "resil.integrations.pymysql": ("pymysql.connections",),
    "resil.integrations.redis": ("redis.connection", "redis.client",
                                 "redis.asyncio.connection", "redis.asyncio.client"),
    "resil.integrations.flask": ("flask.app",),
    "resil.integrations.django": ("django.core.handlers.wsgi", "django.core.handlers.asgi",
                                  "django.core.handlers.exception",
                                  "django.contrib.sessions.middleware"),
    "resil.integrations.requests": ("requests.adapters",),
    "resil.integrations.urllib3": ("urllib3.poolmanager",),
    "resil.integrations.httpx": ("httpx._transports.default",),
    "resil.integrations.urllib_request": ("urllib.request",),
    "resil.integrations.starlette": ("starlette.applications",
                                     "starlette.middleware.sessions"),
    "resil.integrations.aiomysql": ("aiomysql.connection",),
    "resil.integrations.mysqlclient": ("MySQLdb.connections",),
    "resil.integrations.asyncmy": ("asyncmy.connection",),
}


def discover(disabled: frozenset[str] = frozenset()) -> list[Integration]:
    """Every integration registered under the ``resil.integrations`` entry-point group.

    resil finds its own integrations this way too, so a third party adds one by
    declaring an entry point. One that fails to load is logged and skipped.
    """
    found: list[Integration] = []
    for name, value in _enabled(disabled):
        made = _load(name, value)
        if made is not None:
            found.append(made)
    return found


def discover_deferred(disabled: frozenset[str] = frozenset()) -> list[Integration | Deferred]:
    """:func:`discover` for the agent: resil's own integrations come as :class:`Deferred`,
    loaded when a module they patch is imported; the others are loaded now."""
    found: list[Integration | Deferred] = []
    for name, value in _enabled(disabled):
        module = value.partition(":")[0].strip()
        if module in WATCHES:
            found.append(Deferred(name, value, WATCHES[module]))
            continue
        made = _load(name, value)
        if made is not None:
            found.append(made)
    return found


def _enabled(disabled: frozenset[str]) -> list[tuple[str, str]]:
    points = entry_points(GROUP)
    for name in sorted(disabled - {name for name, _ in points}):
        log.warning("resil: disabled_integrations names %r, which is no installed "
                    "integration: nothing disabled by it", name)
    enabled = []
    for name, value in points:
        if name in disabled:
            log.info("resil: integration %s disabled by configuration", name)
        else:
            enabled.append((name, value))
    return enabled


def _load(name: str, value: str) -> Integration | None:
    """The integration an entry point names, made; None (a counted fault) if it fails."""
    try:
        module, _, attribute = value.partition(":")
        target: Any = importlib.import_module(module.strip())
        for part in attribute.split("[")[0].strip().split("."):
            target = getattr(target, part)
        made: Integration = target()
        return made
    except Exception as exc:
        counters.record_fault(f"load integration {name}", exc)
        return None


class Deferred:
    """One of resil's own integrations, not loaded yet: its :meth:`instrument` registers
    post-import hooks for the modules it patches, and the first of them to be imported
    loads the integration and instruments it, before the importing code goes on. Until
    then it has nothing patched, nothing in flight and nothing to abandon; once loaded,
    every attribute is the loaded integration's."""

    def __init__(self, name: str, value: str, modules: tuple[str, ...]) -> None:
        self.name = name
        self._value = value
        self._modules = modules
        self._lock = threading.RLock()
        self._wanted = False
        self._hooked = False
        self.loaded: Integration | None = None

    def instrument(self) -> None:
        with self._lock:
            self._wanted = True
            if self.loaded is not None or any(m in sys.modules for m in self._modules):
                self._load_and_instrument()
            elif not self._hooked:      # hooks stay: _on_import checks _wanted
                self._hooked = True
                from .. import hooks
                for module in self._modules:
                    hooks.register(module, self._on_import)

    def _on_import(self, module: object) -> None:
        with self._lock:
            if self._wanted:
                self._load_and_instrument()

    def _load_and_instrument(self) -> None:
        if self.loaded is None:
            self.loaded = _load(self.name, self._value)
        if self.loaded is not None:
            try:
                self.loaded.instrument()
            except Exception as exc:
                counters.record_fault(f"{self.name}.instrument", exc)

    def uninstrument(self) -> None:
        with self._lock:
            self._wanted = False
            if self.loaded is not None:
                self.loaded.uninstrument()

    @property
    def patched(self) -> bool:
        return self.loaded is not None and self.loaded.patched

    def in_flight(self) -> dict[str, int]:
        return self.loaded.in_flight() if self.loaded is not None else {}

    def abandon(self, resource: str, address: tuple[str, int]) -> int:
        return self.loaded.abandon(resource, address) if self.loaded is not None else 0

    def __getattr__(self, name: str) -> Any:
        """Anything else is the integration's own (loaded now if it is not yet)."""
        if name.startswith("__") or name in ("loaded", "_value", "_modules", "_lock"):
            raise AttributeError(name)
        with self._lock:
            if self.loaded is None:
                self.loaded = _load(self.name, self._value)
        if self.loaded is None:
            raise AttributeError(name)
        return getattr(self.loaded, name)
