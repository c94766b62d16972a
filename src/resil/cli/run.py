"""``resil-run [options] COMMAND [ARGS...]``: run any Python program with the agent.

It validates the configuration (exit 2 on error, before the program starts), puts the
bootstrap folder first on ``PYTHONPATH`` and ``exec``s the command, so the program *is*
the process: its exit code and signals pass through untouched, and every Python child
it starts (gunicorn workers, ``subprocess`` calls) gets the agent too.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .. import envvars
from .._version import __version__
from ..bootstrap import BOOTSTRAP_DIR
from ..config import Config, config_path, disabled, load_config
from ..errors import ConfigError


def parser() -> argparse.ArgumentParser:
    """The argument parser; its flags are generated from :mod:`resil.envvars`."""
    p = argparse.ArgumentParser(
        prog="resil-run",
        description="Run a Python program with the resil agent, e.g. "
                    "`resil-run python app.py`, `resil-run gunicorn app:app -w 4`.",
        epilog="Every flag sets the environment variable shown; see docs/configuration.md.",
    )
    p.add_argument("--version", action="version", version=f"resil-run {__version__}")
    p.add_argument("--config", metavar="PATH",
                   help=f"configuration file (env {envvars.CONFIG_ENV}; default ./resil.toml)")
    for setting in envvars.SETTINGS:
        if not setting.flag:
            continue
        if setting.kind == "bool":
            p.add_argument(setting.option, dest=setting.env, action="store_const", const="1",
                           help=f"{setting.help} (env {setting.env})")
        else:
            p.add_argument(setting.option, dest=setting.env, metavar="VALUE",
                           help=f"{setting.help} (env {setting.env})")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the program and its arguments")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``resil-run``; returns only on error (otherwise it execs)."""
    args = parser().parse_args(argv)
    if not args.command:
        parser().print_usage(sys.stderr)
        print("resil-run: error: no command given (e.g. resil-run python app.py)",
              file=sys.stderr)
        return 2
    env = dict(os.environ)
    for setting in envvars.SETTINGS:
        value = getattr(args, setting.env, None)
        if value is not None:
            env[setting.env] = value
    if not disabled(env):
        try:
            path, _ = config_path(args.config, env)
            config = load_config(path, env)
            _check_control_url(config)
            _check_integrations(config, env)
        except ConfigError as exc:
            print(f"resil-run: configuration error: {exc}", file=sys.stderr)
            return 2
        env[envvars.CONFIG_ENV] = str(Path(path).resolve())
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != BOOTSTRAP_DIR]
        env["PYTHONPATH"] = os.pathsep.join([BOOTSTRAP_DIR, *paths])
    return _exec(args.command, env)


def _check_control_url(config: Config) -> None:
    """A malformed control-plane URL is a configuration error, found before the program
    starts (building a backend parses the URL; it connects to nothing)."""
    from ..control import open_configured
    from ..errors import ControlPlaneError
    try:
        open_configured(config)
    except ControlPlaneError as exc:
        source = f"environment variable {envvars.by_key()['control.url'].env}" \
            if envvars.by_key()["control.url"].env in os.environ else str(config.path)
        raise ConfigError(source, "control.url", config.control_url, str(exc)) from None


def _check_integrations(config: Config, env: Mapping[str, str]) -> None:
    """An integration name that no installed integration has is a typo (``pymsql``):
    the integration it meant would stay on."""
    from ..integrations import GROUP, entry_points
    names = sorted({name for name, _ in entry_points(GROUP)})
    for name in sorted(config.disabled_integrations - set(names)):
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        var = envvars.by_key()["disabled_integrations"].env
        source = f"environment variable {var}" if var in env else str(config.path)
        raise ConfigError(source, "disabled_integrations", name,
                          f"no such integration; {hint}(installed: {', '.join(names)})")


def _exec(command: list[str], env: dict[str, str]) -> int:
    try:
        os.execvpe(command[0], command, env)
    except FileNotFoundError:
        print(f"resil-run: command not found: {command[0]}", file=sys.stderr)
        return 127
    except PermissionError:
        print(f"resil-run: permission denied: {command[0]}", file=sys.stderr)
        return 126
    return 0  # pragma: no cover - execvpe does not return


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
