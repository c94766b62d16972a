"""resil's loggers, without importing :mod:`logging` before a line is to be written.

``import logging`` brings in ``re``, ``traceback``, ``string`` and ``threading`` with it:
20–30 ms of a small machine's start-up, paid by every process the agent starts in, most
of which never log a line of resil's. A :class:`Logger` here behaves as the logger of the
same name from :func:`logging.getLogger`:

- once anything imported :mod:`logging` (the application, a library, resil itself), every
  call goes to the real logger, configured as :func:`configure` says;
- before that, a line below resil's level (``log_level``) is dropped, as the real logger
  would drop it; a line at or above it imports :mod:`logging` and is written.

:func:`configure` sets resil's level and handler (standard error, while the
application's logging has no handler of its own) the moment :mod:`logging` is imported
(a post-import hook), before the code that imported it goes on: an application that
then sets resil's logger its own way keeps its setting, as before.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Any

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}

#: resil's level while :mod:`logging` is not imported (Python's default: WARNING).
_threshold = 30
#: The level and format :func:`configure` was last given, applied once logging loads.
_wanted: tuple[str, str] | None = None
_hooked = False


class Logger:
    """``logging.getLogger(name)``, fetched on the first line that is written."""

    __slots__ = ("name", "_real")

    def __init__(self, name: str) -> None:
        self.name = name
        self._real: logging.Logger | None = None

    def real(self) -> logging.Logger:
        """The :mod:`logging` logger (imports :mod:`logging`, and so configures it)."""
        found = self._real
        if found is None:
            import logging
            found = self._real = logging.getLogger(self.name)
        return found

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 (logging's name)
        if self._real is None and "logging" not in sys.modules:
            return level >= _threshold
        return self.real().isEnabledFor(level)

    def _log(self, level: int, msg: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.isEnabledFor(level):
            kwargs.setdefault("stacklevel", 3)      # the caller's line, not this module's
            self.real().log(level, msg, *args, **kwargs)

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        real = self._real           # the common case, answered without two more calls
        if real is not None and not real.isEnabledFor(10):
            return
        self._log(10, msg, args, kwargs)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._log(20, msg, args, kwargs)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._log(30, msg, args, kwargs)

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._log(40, msg, args, kwargs)

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("exc_info", True)
        self._log(40, msg, args, kwargs)


def get(name: str) -> Logger:
    """The logger ``name`` (``resil`` or one under it)."""
    return Logger(name)


def configure(level: str, form: str = "text") -> None:
    """resil's logger at ``level`` (a name in :data:`LEVELS`), with the fallback handler
    in ``form`` (``text`` or ``json``): now if :mod:`logging` is loaded, else the moment
    it is."""
    global _threshold, _wanted, _hooked
    _threshold = LEVELS.get(level.upper(), 30)
    _wanted = (level, form)
    if "logging" in sys.modules:
        _apply()
    elif not _hooked:
        _hooked = True
        from . import hooks
        hooks.register("logging", _on_import)


def _on_import(module: object) -> None:
    """Set resil's logger up as the application's ``import logging`` completes: a fault
    here must not fail that import (nor count through :mod:`.counters`, which logs
    through this module), so it is said on standard error and resil's lines go through
    :mod:`logging`'s own defaults."""
    try:
        _apply()
    except Exception as exc:  # fail-open: the application's import goes on
        print(f"resil: logging setup failed ({exc!r}); resil's lines use logging's "
              "defaults", file=sys.stderr)


def _apply() -> None:
    if _wanted is None:
        return
    import logging
    level, form = _wanted
    handler_class, json_lines = _handler_classes()
    logger = logging.getLogger("resil")
    logger.setLevel(level)
    for handler in [h for h in logger.handlers if isinstance(h, handler_class)]:
        logger.removeHandler(handler)
    if not logger.handlers:
        handler = handler_class()
        handler.setFormatter(json_lines() if form == "json" else logging.Formatter(
            "%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)


_classes: tuple[Any, Any] | None = None


def _handler_classes() -> tuple[Any, Any]:
    """resil's fallback handler and JSON formatter, made once :mod:`logging` is loaded
    (classes of :mod:`logging`'s: they cannot exist before it)."""
    global _classes
    if _classes is not None:
        return _classes
    import json
    import logging
    import time

    class FallbackHandler(logging.StreamHandler):  # type: ignore[type-arg]
        """Standard error, unless the application's logging (the root logger's handlers)
        will print the line: Python's last resort, with resil's level and format."""

        def emit(self, record: logging.LogRecord) -> None:
            if not logging.getLogger().handlers:
                super().emit(record)

    class JsonLines(logging.Formatter):
        """One JSON object per line: time (ISO 8601, UTC), level, logger, message, pid,
        and the exception when there is one."""

        def format(self, record: logging.LogRecord) -> str:
            entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                     + f".{int(record.msecs):03d}Z", "level": record.levelname,
                     "logger": record.name, "message": record.getMessage(),
                     "pid": record.process}
            if record.exc_info:
                entry["exception"] = self.formatException(record.exc_info)
            return json.dumps(entry)

    _classes = (FallbackHandler, JsonLines)
    return _classes
