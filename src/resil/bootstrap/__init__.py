"""Process bootstrap for ``resil-run``.

``resil-run`` puts this folder first on ``PYTHONPATH``; Python then imports our
``sitecustomize`` at start-up, which starts the agent and chains to the next
``sitecustomize`` on the path (the user's own, or OpenTelemetry's). When
``opentelemetry-instrument`` runs *inside* ``resil-run``, its ``sitecustomize`` comes
first and does not chain; it does call every ``opentelemetry_pre_instrument`` entry
point, and :func:`otel_pre_instrument` is ours, so the two compose in either order.

The configuration check of ``resil-run`` lives here too (:func:`validated`): for a
Python program the process after the ``exec`` runs it (see :data:`CHECK_ENV`), for any
other ``resil-run`` runs it before the ``exec``; ``resil config check`` uses its parts.
"""

from __future__ import annotations

import importlib
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..config import Config

BOOTSTRAP_DIR = os.path.dirname(os.path.abspath(__file__))


def under_resil_run() -> bool:
    """Whether this process was started (directly or as a child) by ``resil-run``."""
    return BOOTSTRAP_DIR in os.environ.get("PYTHONPATH", "").split(os.pathsep)


#: Set by ``resil-run`` to its pid when it leaves the configuration check to the
#: program's bootstrap: the process with that pid (the program, after the ``exec``)
#: validates and exits 2 on an error; its children, with other pids, never do.
CHECK_ENV = "_RESIL_RUN_CHECK"


def boot() -> None:
    """Start the agent for ``resil-run``; never raise into the program."""
    check = os.environ.pop(CHECK_ENV, None) == str(os.getpid())
    try:
        from .._entry import disabled
        if disabled():
            return
        config = _checked() if check else None
        from ..agent import start
        start(config)
    except Exception as exc:  # fail-open: the program runs even if the agent cannot
        print(f"resil: agent not started: {exc}", file=sys.stderr)


def _checked() -> Config:
    """The configuration, validated as ``resil-run`` would have before the ``exec``; an
    error stops the process with exit 2 before any of the program's code runs."""
    from ..errors import ConfigError
    try:
        return validated(None, os.environ)
    except ConfigError as exc:
        print(f"resil-run: configuration error: {exc}", file=sys.stderr, flush=True)
        os._exit(2)


def validated(path: str | None, env: Mapping[str, str]) -> Config:
    """The configuration, checked as ``resil-run`` checks it before a program starts:
    loaded, its control URL parsed, its integration names known. Raises ConfigError."""
    from .. import _deps
    from ..config import config_path, load_config
    file, _ = config_path(path, env)
    config = load_config(file, env)
    _deps.require_for_agent(config)
    check_control_url(config)
    check_integrations(config, env)
    return config


def check_control_url(config: Config) -> None:
    """A malformed control-plane URL is a configuration error, found before the program
    starts (building a backend parses the URL; it connects to nothing)."""
    from .. import envvars
    from ..control import open_configured
    from ..errors import ConfigError, ControlPlaneError
    try:
        open_configured(config)
    except ControlPlaneError as exc:
        source = f"environment variable {envvars.by_key()['control.url'].env}" \
            if envvars.by_key()["control.url"].env in os.environ else str(config.path)
        raise ConfigError(source, "control.url", config.control_url, str(exc)) from None


def check_integrations(config: Config, env: Mapping[str, str]) -> None:
    """An integration name that no installed integration has is a typo (``pymsql``):
    the integration it meant would stay on."""
    from .. import envvars
    from ..errors import ConfigError
    from ..integrations import GROUP, entry_points
    names = sorted({name for name, _ in entry_points(GROUP)})
    for name in sorted(config.disabled_integrations - set(names)):
        import difflib  # only to explain a mistake
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        var = envvars.by_key()["disabled_integrations"].env
        source = f"environment variable {var}" if var in env else str(config.path)
        raise ConfigError(source, "disabled_integrations", name,
                          f"no such integration; {hint}(installed: {', '.join(names)})")


def otel_pre_instrument() -> None:
    """``opentelemetry_pre_instrument`` entry point: start the agent under resil-run."""
    if under_resil_run():
        boot()


def chain_sitecustomize() -> None:
    """Import the next ``sitecustomize`` on ``sys.path``, skipping our own folder.

    Our folder leaves ``sys.path`` for good (the program has no use for it), while it
    stays on ``PYTHONPATH`` so that child processes get the agent too.
    """
    ours = sys.modules.pop("sitecustomize", None)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != BOOTSTRAP_DIR]
    try:
        importlib.import_module("sitecustomize")   # the user's or another tool's, if any
    except ImportError as exc:
        if exc.name != "sitecustomize":
            print(f"resil: your sitecustomize failed: {exc!r}", file=sys.stderr)
        if ours is not None:
            sys.modules["sitecustomize"] = ours
