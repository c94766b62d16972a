"""``resil-run [options] COMMAND [ARGS...]``: run any Python program with the agent.

It puts the bootstrap folder first on ``PYTHONPATH`` and ``exec``s the command, so the
program *is* the process: its exit code and signals pass through untouched, and every
Python child it starts (gunicorn workers, ``subprocess`` calls) gets the agent too.

The configuration is validated once, before the program's own code runs (exit 2 on an
error): by the bootstrap of the program when the command is a Python interpreter or a
script run by one (``python``, ``gunicorn``, ``flask``: the same process, after the
``exec``), and here otherwise (``uwsgi``, a shell). So the front process of the common
case imports almost nothing: start-up is paid once, in the program.
"""

from __future__ import annotations

import os
import sys

from .._entry import CONFIG_ENV, config_file, disabled
from ..bootstrap import BOOTSTRAP_DIR, CHECK_ENV, validated
from ..errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping, Sequence


def _is_python(path: str) -> bool:
    """Whether a file name is a Python interpreter's: python, python3, python3.12, pypy3."""
    name = os.path.basename(path)
    rest = name.removeprefix("python") if name.startswith("python") else name.removeprefix("pypy")
    return rest != name and all(c.isdigit() or c == "." for c in rest)


def parser() -> argparse.ArgumentParser:
    """The argument parser; its flags are generated from :mod:`resil.envvars`."""
    import argparse

    from .. import envvars
    from .._version import __version__
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
    argv = sys.argv[1:] if argv is None else list(argv)
    env = dict(os.environ)
    quick = _plain(argv)
    if quick is not None:               # `resil-run [--config PATH] COMMAND...`
        explicit, command = quick
    else:
        from .. import envvars
        args = parser().parse_args(argv)
        explicit, command = args.config, args.command
        for setting in envvars.SETTINGS:
            value = getattr(args, setting.env, None)
            if value is not None:
                env[setting.env] = value
    if not command:
        parser().print_usage(sys.stderr)
        print("resil-run: error: no command given (e.g. resil-run python app.py)",
              file=sys.stderr)
        return 2
    if not disabled(env):
        path, _ = config_file(explicit, env)
        if _runs_python(command[0], env):
            env[CHECK_ENV] = str(os.getpid())      # the bootstrap validates, same pid
        else:
            try:
                validated(path, env)
            except ConfigError as exc:
                print(f"resil-run: configuration error: {exc}", file=sys.stderr)
                return 2
        env[CONFIG_ENV] = os.path.abspath(path)
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != BOOTSTRAP_DIR]
        env["PYTHONPATH"] = os.pathsep.join([BOOTSTRAP_DIR, *paths])
        # uWSGI forks its workers in C: unless told to, it skips CPython's fork hooks, so
        # a worker inherits the master's locks as they were (one held by an agent thread
        # stays held: a deadlock) and resil's own after-fork never runs. Its option
        # `py-call-uwsgi-fork-hooks`, as an environment variable, makes its forks behave
        # as os.fork() does. Other programs ignore it; a value already set is kept.
        env.setdefault(UWSGI_FORK_HOOKS_ENV, "1")
    return _exec(command, env)


UWSGI_FORK_HOOKS_ENV = "UWSGI_PY_CALL_UWSGI_FORK_HOOKS"
"""uWSGI's ``--py-call-uwsgi-fork-hooks`` option, set by the environment."""


def _plain(argv: list[str]) -> tuple[str | None, list[str]] | None:
    """``[--config PATH] COMMAND...`` read without argparse, or None for anything else
    (another flag, ``--help``, no command): those go through the full parser."""
    explicit = None
    if argv[:1] == ["--config"] and len(argv) > 1:
        explicit, argv = argv[1], argv[2:]
    elif argv[:1] and argv[0].startswith("--config="):
        explicit, argv = argv[0].partition("=")[2], argv[1:]
    if not argv or argv[0].startswith("-") or explicit == "":
        return None
    return explicit, argv


def _runs_python(program: str, env: Mapping[str, str]) -> bool:
    """Whether ``program`` is a Python interpreter or a script whose ``#!`` line names
    one (directly or through ``env``): then the process after the ``exec`` runs our
    bootstrap itself. Anything unclear is answered no (validated here)."""
    found = _which(program, env.get("PATH", os.defpath))
    if found is None:
        return False
    if _is_python(found):
        return True
    try:
        with open(found, "rb") as fh:
            first = fh.readline(256)
    except OSError:
        return False
    if not first.startswith(b"#!"):
        return False
    words = first[2:].decode(errors="replace").split()
    if words and os.path.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    return bool(words) and _is_python(words[0])


def _which(program: str, search: str) -> str | None:
    """``shutil.which`` over ``search``, written out: importing shutil here would cost
    the front process more than this loop does."""
    if os.sep in program:
        return program if os.path.isfile(program) else None
    for folder in search.split(os.pathsep):
        candidate = os.path.join(folder or ".", program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _exec(command: list[str], env: dict[str, str]) -> int:
    # What resil-run starts is the top of its instance, even when an agent started it
    # (resil.agent.PARENT_ENV: written out, importing the agent costs the front process).
    env.pop("_RESIL_PARENT_AGENT", None)
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
