"""Configuration: ``resil.toml`` plus ``RESIL_*`` overrides, read once into a frozen Config.

This is the only module that reads the environment. Every value is checked here, at
start, and a bad one raises :class:`~resil.errors.ConfigError` naming its source (the
file or the environment variable), the key and the value. Nothing downstream validates
again: a :class:`Config` that exists is a valid one.

No default, range or choice is written here: each key is read against its declaration
in :mod:`resil.envvars` (through :class:`resil._configparse.Table`), the one place that
also generates ``resil-run``'s flags and docs/configuration.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

from . import _log, _tomlcache, envvars
from ._configparse import (
    HostPort,
    Source,
    Table,
    address_problem,
    build_resources,
    host_port,
)
from ._entry import CONFIG_ENV, TRUE, config_file
from ._record import dataclass
from .errors import MISSING, ConfigError
from .topology import Resource, Topology, address_keys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

if TYPE_CHECKING:   # loaded only for a configuration with [scaling]: it costs start-up
    from .scalepolicy import Scaling

_CONTROL_SCHEMES = ("file", "redis", "rediss", "redis+sentinel", "etcd")
log = _log.get("resil.config")
DEFAULT_SERVICE = "default"
"""The service of a process whose configuration and environment name none."""
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class Config:
    """The whole configuration, typed and frozen. Build it with :func:`load_config`."""

    path: Path | None
    unit: str
    topology: Topology
    control_url: str
    signing_key_env: str
    signing_key: bytes | None
    previous_signing_keys: tuple[bytes, ...]
    """Keys of earlier signals, still accepted during a key rotation (never used to sign)."""
    poll_interval: float
    heartbeat_interval: float
    admin_listen: tuple[str, int] | None
    """Where the admin endpoint listens; None when ``[admin] listen = "off"``."""
    drain_period: float
    """Seconds of not-ready serving after SIGTERM (0: SIGTERM untouched)."""
    capacity: float
    """Concurrent requests the instance can serve (0: its reporting workers)."""
    ready_requires_primary: bool
    """Whether readiness also needs every resource's primary to be reachable."""
    target_utilization: float
    """Target busy fraction for ``desired_instances``."""
    sessions_resource: str
    sessions_on_error: str
    """``fail`` (503) or ``degrade`` (empty session) when Redis is unreachable."""
    sessions_max_size: int
    sessions_replica_wait: float
    routing_key: tuple[str, str] | None
    """Where incoming requests carry their routing key: (``header``/``cookie``/``query``,
    name); None when wrong-unit protection is off."""
    wrong_unit: str
    """``reject``, ``forward`` or ``allow``."""
    forward_to: str
    """The http resource wrong-unit writes are forwarded to."""
    disabled: bool
    disabled_integrations: frozenset[str]
    log_level: str
    log_format: str = "text"
    """``text`` or ``json``: how resil's own log handler writes."""
    service: str = DEFAULT_SERVICE
    """The service this process belongs to (``service``, else ``OTEL_SERVICE_NAME``)."""
    scaling_table: Scaling | None = None
    """The ``[scaling]`` table read (None: the file has none); see :attr:`scaling`."""

    @property
    def scaling(self) -> Scaling:
        """The scaling policies (``[scaling]``, else every declared default), applied by
        ``resil scale``; agents read them only for their ``/scale`` fallback."""
        if self.scaling_table is not None:
            return self.scaling_table
        from .scalepolicy import default_scaling
        return default_scaling()

    @property
    def resources(self) -> Mapping[str, Resource]:
        """Resources by name."""
        return self.topology.resources


def config_path(explicit: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None) -> tuple[Path, bool]:
    """The configuration file to read, and whether it was asked for explicitly."""
    file, asked = config_file(explicit, env)
    return Path(file), asked


def load_config(path: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None) -> Config:
    """Read, override and validate the configuration.

    ``path`` wins over ``RESIL_CONFIG``, which wins over ``./resil.toml``. Raises
    :class:`ConfigError` for anything wrong, including a missing or unreadable file.
    """
    env = os.environ if env is None else env
    file, _explicit = config_path(path, env)
    source = Source(file)
    try:
        with open(file, "rb") as fh:
            raw = _tomlcache.parse(fh.read(), str(file))
    except FileNotFoundError:
        raise ConfigError(str(file), "file", MISSING,
                          f"configuration file not found (name it: `resil config check "
                          f"PATH`, `--config PATH` elsewhere, or {CONFIG_ENV})"
                          ) from None
    except OSError as exc:
        raise ConfigError(str(file), "file", MISSING, f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(file), "file", MISSING, f"not UTF-8 text (byte {exc.start}: "
                          f"{exc.object[exc.start:exc.start + 1]!r}); TOML files are UTF-8"
                          ) from None
    except ValueError as exc:   # tomllib.TOMLDecodeError (tomllib loads only to parse)
        raise ConfigError(str(file), "file", MISSING, f"not valid TOML: {exc}") from None
    _apply_env(raw, env, source)
    _refuse_unknown_env(raw, env)
    return _build(raw, file.resolve(), env, source)


# --------------------------------------------------------------------------- overrides

def _apply_env(raw: dict[str, Any], env: Mapping[str, str], source: Source) -> None:
    """Lay ``RESIL_*`` variables over the file's values (environment wins)."""
    for setting in envvars.SETTINGS:
        if setting.env in env:
            table = raw.setdefault(setting.section, {}) if setting.section else raw
            if not isinstance(table, dict):
                raise source.error(setting.section, table, "must be a table")
            source.env[setting.key] = setting.env
            table[setting.name] = _parse_env(setting, setting.env, env[setting.env], source)
    resources = raw.get("resources")
    if not isinstance(resources, dict):
        return
    for name, table in resources.items():
        if not isinstance(table, dict):
            continue
        for setting in envvars.RESOURCE_KEYS:
            var = envvars.resource_env(name, setting.name)
            if var in env:
                key = f"resources.{name}.{setting.name}"
                source.env[key] = var
                table[setting.name] = _parse_env(setting, var, env[var], source, key)


_SECTIONS = tuple(f"RESIL_{name.upper()}_" for name in
                  ("control", "admin", "scaling", "sessions", "routing", "resources"))
"""Prefixes of the variables that set keys of a table: nothing else may start so."""


def _refuse_unknown_env(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    """A ``RESIL_*`` variable that sets no key is a typo (``RESIL_UNTI``,
    ``RESIL_RESOURCES_DB_PRIMRAY``) and an error, when it starts like a table's variables
    or is close to a real one. Other ``RESIL_*`` names are left alone, with a warning:
    they may be a secret that a ``*_env`` key names, or another tool's."""
    known = {s.env for s in envvars.SETTINGS} | {CONFIG_ENV}
    resources = raw.get("resources")
    for name in resources if isinstance(resources, dict) else ():
        known |= {envvars.resource_env(str(name), s.name) for s in envvars.RESOURCE_KEYS}
    named = _named_variables(raw)
    for var in sorted(env):
        if not var.startswith("RESIL_") or var in known or var in named:
            continue
        if var.startswith("RESIL_RESOURCES_"):
            raise ConfigError("environment", var, MISSING, "not a resil setting; " + _resource_hint(
                var, [str(n) for n in resources] if isinstance(resources, dict) else []))
        close = _close_matches(var, sorted(known), n=1, cutoff=0.85)
        if close or var.startswith(_SECTIONS):
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError("environment", var, MISSING, f"not a resil setting{hint}")
        log.warning("resil: environment variable %s is not a resil setting: ignored", var)


def _resource_hint(var: str, resources: list[str]) -> str:
    """What ``RESIL_RESOURCES_...`` got wrong: the key of a resource of the file (with the
    closest key), or the resource itself."""
    for name in resources:
        prefix = envvars.resource_env(name, "")
        if var.startswith(prefix):
            key = var[len(prefix):].lower()
            close = _close_matches(key, [s.name for s in envvars.RESOURCE_KEYS],
                                   n=1, cutoff=0.7)
            return f"did you mean {envvars.resource_env(name, close[0])}?" if close else \
                f"[resources.{name}] has no key {key!r}"
    return (f"no resource of the file is named so (its resources: {', '.join(resources)}; "
            f"the variables are {envvars.resource_env('NAME', 'KEY')})")


def _named_variables(raw: Mapping[str, Any]) -> set[str]:
    """The variables that ``*_env`` keys name (passwords, signing keys), at any depth."""
    found: set[str] = set()
    for key, value in raw.items():
        if isinstance(value, Mapping):
            found |= _named_variables(value)
        elif str(key).endswith("_env") and isinstance(value, str):
            found.add(value)
    return found


def _parse_env(setting: envvars.Setting, var: str, text: str, source: Source,
               key: str | None = None) -> object:
    key = key or setting.key
    text = text.strip()
    if setting.kind == "bool":
        if text.lower() in TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(f"environment variable {var}", key, text, "expected 1/0, true/false")
    if setting.kind in ("float", "int"):   # a whole number is checked with the range
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"environment variable {var}", key, text,
                              "expected a number") from None
    if setting.kind in ("list", "ints"):   # "503" is read as a status like 503
        return [part.strip() for part in text.split(",") if part.strip()]
    if setting.kind == "endpoints":
        return _parse_env_endpoints(var, key, text)
    return text


def _parse_env_endpoints(var: str, key: str, text: str) -> dict[str, object]:
    """``beijing=10.0.1.5:3306,hangzhou=10.0.2.5:3306`` (a unit may repeat for http)."""
    out: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        unit, sep, address = part.partition("=")
        if not sep or not unit.strip() or not address.strip():
            raise ConfigError(f"environment variable {var}", key, text,
                              "expected unit=address[,unit=address...]")
        unit, address = unit.strip(), address.strip()
        if unit in out:
            previous = out[unit]
            out[unit] = (previous if isinstance(previous, list) else [previous]) + [address]
        else:
            out[unit] = address
    return out


# --------------------------------------------------------------------------- building

def _build(raw: dict[str, Any], path: Path, env: Mapping[str, str], source: Source) -> Config:
    _check_keys(raw, source)
    resources = build_resources(raw.get("resources", {}), source)
    top = _table(raw, "", source)
    units = _units(top, resources)
    _check_endpoints_in_units(resources, units, source)
    _check_unique_addresses(resources, source)
    unit = top.text("unit")
    if unit not in units:
        raise source.error("unit", unit, f"not one of the units: {', '.join(units) or 'none'}")
    control = _table(raw, "control", source)
    admin = _table(raw, "admin", source)
    sessions = _table(raw, "sessions", source)
    control_url = _control_url(control, path)
    key_env = control.text("signing_key_env")
    signing_key = None
    if key_env:
        value = env.get(key_env, "")
        if not value:
            raise source.error("control.signing_key_env", key_env,
                               f"environment variable {key_env} is not set or empty")
        signing_key = value.encode()
    previous_env = control.text("previous_signing_keys_env")
    previous: tuple[bytes, ...] = ()
    if previous_env:
        if signing_key is None:
            raise source.error("control.previous_signing_keys_env", previous_env,
                               "needs control.signing_key_env (the current key)")
        previous = tuple(k.strip().encode() for k in env.get(previous_env, "").split(",")
                         if k.strip())
        if not previous:
            raise source.error("control.previous_signing_keys_env", previous_env,
                               f"environment variable {previous_env} is not set or empty")
    listen = _listen(admin, env)
    sessions_resource = sessions.text("resource")
    if sessions_resource:
        found = resources.get(sessions_resource)
        if found is None or found.kind != "redis":
            raise source.error("sessions.resource", sessions_resource,
                               "must name a resource of kind redis")
    routing_key, wrong_unit, forward_to = _routing(_table(raw, "routing", source), resources)
    scaling = None
    if "scaling" in raw:
        from .scalepolicy import build_scaling
        scaling = build_scaling(raw, units, source)
    return Config(
        path=path,
        unit=unit,
        topology=Topology(unit=unit, units=units, resources=MappingProxyType(resources)),
        control_url=control_url,
        signing_key_env=key_env,
        signing_key=signing_key,
        previous_signing_keys=previous,
        poll_interval=control.number("poll_interval", scheme=urlsplit(control_url).scheme),
        heartbeat_interval=control.number("heartbeat_interval"),
        admin_listen=(listen.host, listen.port) if listen else None,
        drain_period=admin.number("drain_period"),
        capacity=admin.number("capacity"),
        ready_requires_primary=admin.flag("ready_requires_primary"),
        target_utilization=admin.number("target_utilization"),
        sessions_resource=sessions_resource,
        sessions_on_error=sessions.text("on_error"),
        sessions_max_size=sessions.integer("max_size"),
        sessions_replica_wait=sessions.number("replica_wait"),
        routing_key=routing_key,
        wrong_unit=wrong_unit,
        forward_to=forward_to,
        disabled=top.flag("disabled"),
        disabled_integrations=frozenset(top.strings("disabled_integrations")),
        log_level=top.text("log_level"),
        log_format=top.text("log_format"),
        service=_service(top, env),
        scaling_table=scaling,
    )


def _service(top: Table, env: Mapping[str, str]) -> str:
    """The service name: ``service``, else OTel's, else ``default`` (one word: it names
    the fleet's sums in the control plane)."""
    named = top.text("service")
    if named and (not named.isprintable() or any(c.isspace() for c in named)):
        raise top.error("service", named, "must be one word (no spaces)")
    otel = "_".join(env.get("OTEL_SERVICE_NAME", "").split())
    return named or otel or DEFAULT_SERVICE


def _table(raw: dict[str, Any], section: str, source: Source) -> Table:
    """The table ``[section]`` (``""``: the top level) with its declared settings."""
    values = raw.get(section, {}) if section else raw
    return Table(values, section, envvars.section(section), source)


def _listen(admin: Table, env: Mapping[str, str]) -> HostPort | None:
    text = admin.text("listen")
    if "listen" not in admin.values:
        text = _default_listen(text, env)
    if text.lower() == "off":
        return None
    listen = host_port(text, allow_any_port=True)
    if listen is None:
        problem = address_problem(text)
        raise admin.error("listen", text, problem.replace("1 to", "0 to") if "range" in problem
                          else "malformed address: expected host:port (port 0: any free "
                          "port) or \"off\"")
    return listen


def _default_listen(listen: str, env: Mapping[str, str]) -> str:
    """The admin address when none is set: 127.0.0.1:9464, or the next port when this
    process also runs OpenTelemetry's Prometheus exporter on 9464 (its default), so
    that the two never fight for one port in either start order."""
    exporters = {name.strip().lower() for name in env.get("OTEL_METRICS_EXPORTER", "").split(",")}
    otel_port = env.get("OTEL_EXPORTER_PROMETHEUS_PORT", "").strip() or "9464"
    host, _, port = listen.rpartition(":")
    if "prometheus" in exporters and otel_port == port:
        return f"{host}:{int(port) + 1}"
    return listen


def _routing(table: Table, resources: dict[str, Resource],
             ) -> tuple[tuple[str, str] | None, str, str]:
    text = table.text("key")
    key = None
    if text:
        where, sep, name = text.partition(":")
        if not sep or where.strip() not in ("header", "cookie", "query") or not name.strip():
            raise table.error("key", text, "expected header:NAME, cookie:NAME or query:NAME")
        key = (where.strip(), name.strip())
    wrong_unit = table.text("wrong_unit")
    forward_to = table.text("forward_to")
    if forward_to:
        found = resources.get(forward_to)
        if found is None or found.kind != "http":
            raise table.error("forward_to", forward_to, "must name a resource of kind http")
    elif wrong_unit == "forward":
        raise table.error("forward_to", MISSING,
                          "required by wrong_unit = \"forward\": the http resource whose "
                          "endpoints are this application's instances")
    return key, wrong_unit, forward_to


def _check_keys(raw: dict[str, Any], source: Source) -> None:
    """Refuse unknown tables and keys: a typo must not be silently ignored."""
    known = envvars.by_key()
    sections = {s.section for s in envvars.SETTINGS if s.section} | {"resources"}
    for key, value in raw.items():
        if isinstance(value, dict) and key in sections:
            if key == "resources":
                continue
            if key == "scaling":    # per-service tables and lists: read by scalepolicy
                continue
            names = sorted(envvars.section(key))
            for sub in value:
                if f"{key}.{sub}" not in known:
                    raise source.error(f"{key}.{sub}", value[sub],
                                       "unknown key" + _did_you_mean(str(sub), names))
        elif key not in known or known[key].section:
            top = sorted(envvars.section("")) + sorted(sections)
            raise source.error(key, value, "unknown key" + _did_you_mean(str(key), top)
                               if key not in sections else "must be a table")


def _did_you_mean(name: str, names: list[str]) -> str:
    close = _close_matches(name, names, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _units(top: Table, resources: dict[str, Resource]) -> tuple[str, ...]:
    declared = top.strings("units")
    if declared:
        return tuple(dict.fromkeys(declared))
    seen: dict[str, None] = {}
    for resource in resources.values():
        seen.update(dict.fromkeys(resource.endpoints))
    return tuple(seen)


def _check_endpoints_in_units(resources: dict[str, Resource], units: tuple[str, ...],
                              source: Source) -> None:
    for resource in resources.values():
        for unit in resource.endpoints:
            if unit not in units:
                raise source.error(f"resources.{resource.name}.endpoints.{unit}",
                                   str(resource.endpoints[unit][0]),
                                   f"endpoint in an undeclared unit (units: {', '.join(units)})")


def _check_unique_addresses(resources: dict[str, Resource], source: Source) -> None:
    """Two resources must not claim one address: routing would be ambiguous."""
    owner: dict[tuple[str, int | None], str] = {}
    for resource in resources.values():
        for key in dict.fromkeys(address_keys(resource)):
            other = owner.setdefault(key, resource.name)
            if other != resource.name:
                shown = key[0] if key[1] is None else f"{key[0]}:{key[1]}"
                raise source.error(f"resources.{resource.name}", shown,
                                   f"address already belongs to resource {other!r}")


def _control_url(control: Table, path: Path) -> str:
    url = control.text("url")
    if not url:
        return (path.parent / "resil-state.json").as_uri()
    scheme = urlsplit(url).scheme
    if scheme not in _CONTROL_SCHEMES:
        raise control.error("url", url,
                            f"unsupported scheme: expected {', '.join(_CONTROL_SCHEMES)}")
    if scheme == "file" and not urlsplit(url).path:
        raise control.error("url", url, "file URL has no path")
    return url


def _close_matches(word: str, candidates: list[str], n: int = 1,
                   cutoff: float = 0.6) -> list[str]:
    """difflib's close matches, imported only when there is a mistake to explain."""
    import difflib
    return difflib.get_close_matches(word, candidates, n=n, cutoff=cutoff)
