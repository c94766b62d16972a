"""Configuration: ``resil.toml`` plus ``RESIL_*`` overrides, read once into a frozen Config.

This is the only module that reads the environment. Every value is checked here, at
start, and a bad one raises :class:`~resil.errors.ConfigError` naming its source (the
file or the environment variable), the key and the value. Nothing downstream validates
again: a :class:`Config` that exists is a valid one.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from . import envvars
from .errors import MISSING, ConfigError
from .topology import (
    KINDS,
    Alias,
    Endpoint,
    HttpPolicy,
    Resource,
    ResourceKind,
    Topology,
    address_keys,
)

DEFAULT_FILE = "resil.toml"
_CONTROL_SCHEMES = ("file", "redis", "rediss", "redis+sentinel", "etcd")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_-]{1,63})*\.?$")
_TRUE = frozenset({"1", "true", "yes", "on"})
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

    @property
    def resources(self) -> Mapping[str, Resource]:
        """Resources by name."""
        return self.topology.resources


class _Source:
    """Remembers where each key's value came from, for error messages."""

    def __init__(self, path: Path | None) -> None:
        self.file = str(path) if path else "<no file>"
        self.env: dict[str, str] = {}

    def of(self, key: str) -> str:
        var = self.env.get(key)
        return f"environment variable {var}" if var else self.file

    def error(self, key: str, value: object, problem: str) -> ConfigError:
        return ConfigError(self.of(key), key, value, problem)


def disabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether ``RESIL_DISABLED`` turns the agent off (checked before any file is read)."""
    env = os.environ if env is None else env
    return env.get("RESIL_DISABLED", "").strip().lower() in _TRUE


def config_path(explicit: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None) -> tuple[Path, bool]:
    """The configuration file to read, and whether it was asked for explicitly."""
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit), True
    if env.get(envvars.CONFIG_ENV):
        return Path(env[envvars.CONFIG_ENV]), True
    return Path(DEFAULT_FILE), False


def load_config(path: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None) -> Config:
    """Read, override and validate the configuration.

    ``path`` wins over ``RESIL_CONFIG``, which wins over ``./resil.toml``. Raises
    :class:`ConfigError` for anything wrong, including a missing or unreadable file.
    """
    env = os.environ if env is None else env
    file, _explicit = config_path(path, env)
    source = _Source(file)
    try:
        with open(file, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(str(file), "file", MISSING,
                          f"configuration file not found (set {envvars.CONFIG_ENV} or "
                          "pass --config)") from None
    except OSError as exc:
        raise ConfigError(str(file), "file", MISSING, f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(file), "file", MISSING, f"not valid TOML: {exc}") from None
    _apply_env(raw, env, source)
    return _build(raw, file.resolve(), env, source)


# --------------------------------------------------------------------------- overrides

def _apply_env(raw: dict[str, Any], env: Mapping[str, str], source: _Source) -> None:
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


def _parse_env(setting: envvars.Setting, var: str, text: str, source: _Source,
               key: str | None = None) -> object:
    key = key or setting.key
    text = text.strip()
    if setting.kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(f"environment variable {var}", key, text, "expected 1/0, true/false")
    if setting.kind == "float":
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"environment variable {var}", key, text,
                              "expected a number") from None
    if setting.kind == "list":
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

def _build(raw: dict[str, Any], path: Path, env: Mapping[str, str], source: _Source) -> Config:
    _check_keys(raw, source)
    resources = _build_resources(raw.get("resources", {}), source)
    units = _units(raw, resources, source)
    _check_endpoints_in_units(resources, units, source)
    _check_unique_addresses(resources, source)
    unit = _str(raw, "unit", source, required=True)
    if unit not in units:
        raise source.error("unit", unit, f"not one of the units: {', '.join(units) or 'none'}")
    control = raw.get("control", {})
    admin = raw.get("admin", {})
    sessions = raw.get("sessions", {})
    control_url = _control_url(control, path, source)
    key_env = _str(control, "signing_key_env", source, prefix="control")
    signing_key = None
    if key_env:
        value = env.get(key_env, "")
        if not value:
            raise source.error("control.signing_key_env", key_env,
                               f"environment variable {key_env} is not set or empty")
        signing_key = value.encode()
    # The file backend polls a local stat (cheap); Redis polls only to reconcile missed
    # pub/sub messages, so every process asking it 20 times a second would be waste.
    poll_default = 0.05 if urlsplit(control_url).scheme == "file" else 1.0
    poll = _number(control, "poll_interval", source, prefix="control", default=poll_default)
    if not 0.001 <= poll <= 60:
        raise source.error("control.poll_interval", poll, "must be between 0.001 and 60 seconds")
    heartbeat = _number(control, "heartbeat_interval", source, prefix="control", default=1.0)
    if not 0.05 <= heartbeat <= 60:
        raise source.error("control.heartbeat_interval", heartbeat,
                           "must be between 0.05 and 60 seconds")
    listen_text = _str(admin, "listen", source, prefix="admin") or "127.0.0.1:9464"
    listen = None
    if listen_text.lower() != "off":
        listen = _host_port(listen_text, allow_any_port=True)
        if listen is None:
            raise source.error("admin.listen", listen_text,
                               "malformed address: expected host:port (port 0: any free "
                               "port) or \"off\"")
    drain = _number(admin, "drain_period", source, prefix="admin", default=0.0)
    if not 0 <= drain <= 3600:
        raise source.error("admin.drain_period", drain, "must be between 0 and 3600 seconds")
    capacity = _number(admin, "capacity", source, prefix="admin", default=0.0)
    if not 0 <= capacity <= 100000:
        raise source.error("admin.capacity", capacity, "must be between 0 (auto) and 100000")
    target = _number(admin, "target_utilization", source, prefix="admin", default=0.6)
    if not 0 < target <= 1:
        raise source.error("admin.target_utilization", target, "must be in (0, 1]")
    sessions_resource = _str(sessions, "resource", source, prefix="sessions")
    if sessions_resource:
        found = resources.get(sessions_resource)
        if found is None or found.kind != "redis":
            raise source.error("sessions.resource", sessions_resource,
                               "must name a resource of kind redis")
    on_error = _str(sessions, "on_error", source, prefix="sessions") or "fail"
    if on_error not in ("fail", "degrade"):
        raise source.error("sessions.on_error", on_error, "expected fail or degrade")
    max_size = _number(sessions, "max_size", source, prefix="sessions", default=65536)
    if not 1024 <= max_size <= 16 * 1024 * 1024 or max_size != int(max_size):
        raise source.error("sessions.max_size", max_size,
                           "must be a whole number of bytes between 1024 and 16777216")
    replica_wait = _number(sessions, "replica_wait", source, prefix="sessions", default=0.1)
    if not 0 <= replica_wait <= 10:
        raise source.error("sessions.replica_wait", replica_wait,
                           "must be between 0 and 10 seconds")
    routing_key, wrong_unit, forward_to = _routing(raw.get("routing", {}), resources, source)
    level = (_str(raw, "log_level", source) or "WARNING").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise source.error("log_level", level, "expected DEBUG, INFO, WARNING or ERROR")
    return Config(
        path=path,
        unit=unit,
        topology=Topology(unit=unit, units=units, resources=MappingProxyType(resources)),
        control_url=control_url,
        signing_key_env=key_env,
        signing_key=signing_key,
        poll_interval=poll,
        heartbeat_interval=heartbeat,
        admin_listen=(listen.host, listen.port) if listen else None,
        drain_period=drain,
        capacity=capacity,
        ready_requires_primary=_bool(admin, "ready_requires_primary", source, prefix="admin"),
        target_utilization=target,
        sessions_resource=sessions_resource,
        sessions_on_error=on_error,
        sessions_max_size=int(max_size),
        sessions_replica_wait=replica_wait,
        routing_key=routing_key,
        wrong_unit=wrong_unit,
        forward_to=forward_to,
        disabled=_bool(raw, "disabled", source),
        disabled_integrations=frozenset(_list(raw, "disabled_integrations", source)),
        log_level=level,
    )


def _routing(table: dict[str, Any], resources: dict[str, Resource],
             source: _Source) -> tuple[tuple[str, str] | None, str, str]:
    text = _str(table, "key", source, prefix="routing")
    key = None
    if text:
        where, sep, name = text.partition(":")
        if not sep or where.strip() not in ("header", "cookie", "query") or not name.strip():
            raise source.error("routing.key", text,
                               "expected header:NAME, cookie:NAME or query:NAME")
        key = (where.strip(), name.strip())
    wrong_unit = _str(table, "wrong_unit", source, prefix="routing") or "reject"
    if wrong_unit not in ("reject", "forward", "allow"):
        raise source.error("routing.wrong_unit", wrong_unit, "expected reject, forward or allow")
    forward_to = _str(table, "forward_to", source, prefix="routing")
    if forward_to:
        found = resources.get(forward_to)
        if found is None or found.kind != "http":
            raise source.error("routing.forward_to", forward_to,
                               "must name a resource of kind http")
    elif wrong_unit == "forward":
        raise source.error("routing.forward_to", MISSING,
                           "required by wrong_unit = \"forward\": the http resource whose "
                           "endpoints are this application's instances")
    return key, wrong_unit, forward_to


def _check_keys(raw: dict[str, Any], source: _Source) -> None:
    """Refuse unknown tables and keys: a typo must not be silently ignored."""
    known = envvars.by_key()
    sections = {s.section for s in envvars.SETTINGS if s.section} | {"resources"}
    for key, value in raw.items():
        if isinstance(value, dict) and key in sections:
            if key == "resources":
                continue
            for sub in value:
                if f"{key}.{sub}" not in known:
                    raise source.error(f"{key}.{sub}", value[sub], "unknown key")
        elif key not in known or known[key].section:
            raise source.error(key, value, "unknown key" if key not in sections
                               else "must be a table")


def _build_resources(tables: object, source: _Source) -> dict[str, Resource]:
    if not isinstance(tables, dict):
        raise source.error("resources", tables, "must be a table of [resources.NAME] tables")
    return {name: _build_resource(name, table, source) for name, table in tables.items()}


def _build_resource(name: str, table: object, source: _Source) -> Resource:
    prefix = f"resources.{name}"
    if not isinstance(table, dict):
        raise source.error(prefix, table, "must be a table")
    known = {s.name for s in envvars.RESOURCE_KEYS}
    for key, value in table.items():
        if key not in known:
            raise source.error(f"{prefix}.{key}", value, "unknown key")
    kind = _str(table, "kind", source, prefix=prefix, required=True)
    if kind not in KINDS:
        raise source.error(f"{prefix}.kind", kind, f"expected one of {', '.join(KINDS)}")
    rkind: ResourceKind = kind
    endpoints = _build_endpoints(name, rkind, table.get("endpoints", MISSING), source)
    primary = _str(table, "primary", source, prefix=prefix) or None
    if rkind == "http":
        if primary:
            raise source.error(f"{prefix}.primary", primary,
                               "http resources have no primary (every unit serves)")
    elif primary is None:
        if len(endpoints) > 1:
            raise source.error(f"{prefix}.primary", MISSING,
                               "required when endpoints are in more than one unit")
        primary = next(iter(endpoints))
    elif primary not in endpoints:
        raise source.error(f"{prefix}.primary", primary,
                           f"no endpoint in that unit (units: {', '.join(endpoints)})")
    aliases = tuple(_alias(prefix, a, source) for a in _list(table, "aliases", source, prefix))
    lock_timeout = _number(table, "lock_timeout", source, prefix=prefix, default=5.0)
    if not 0 < lock_timeout <= 300:
        raise source.error(f"{prefix}.lock_timeout", lock_timeout,
                           "must be between 0 and 300 seconds")
    connect_timeout = _number(table, "connect_timeout", source, prefix=prefix, default=5.0)
    if not 0 < connect_timeout <= 300:
        raise source.error(f"{prefix}.connect_timeout", connect_timeout,
                           "must be between 0 and 300 seconds")
    io_timeout = _number(table, "io_timeout", source, prefix=prefix, default=30.0)
    if not 0 <= io_timeout <= 3600:
        raise source.error(f"{prefix}.io_timeout", io_timeout,
                           "must be between 0 (leave as is) and 3600 seconds")
    policy = _http_policy(prefix, rkind, table, source)
    return Resource(
        name=name, kind=rkind, endpoints=MappingProxyType(endpoints), primary=primary,
        aliases=aliases, http=policy, lock_timeout=lock_timeout, connect_timeout=connect_timeout,
        io_timeout=io_timeout,
        admin_user=_str(table, "admin_user", source, prefix=prefix),
        admin_password_env=_str(table, "admin_password_env", source, prefix=prefix),
        replication_user=_str(table, "replication_user", source, prefix=prefix),
        replication_password_env=_str(table, "replication_password_env", source, prefix=prefix),
    )


_HTTP_KEYS = ("retries", "retry_statuses", "retry_budget", "retry_budget_min", "eject_after",
              "eject_time", "max_ejected_percent", "panic_threshold", "half_open_requests",
              "health_path", "health_interval")


def _http_policy(prefix: str, kind: ResourceKind, table: dict[str, Any],
                 source: _Source) -> HttpPolicy:
    """The retry and outlier-detection policy of an http resource, each value checked."""
    if kind != "http":
        for key in _HTTP_KEYS:
            if key in table:
                raise source.error(f"{prefix}.{key}", table[key], "only for http resources")
        return HttpPolicy()
    default = HttpPolicy()

    def number(name: str, low: float, high: float, integer: bool = False) -> float:
        value = _number(table, name, source, prefix=prefix, default=getattr(default, name))
        if not low <= value <= high or (integer and value != int(value)):
            what = "a whole number" if integer else "a number"
            raise source.error(f"{prefix}.{name}", value, f"must be {what} between {low:g} "
                               f"and {high:g}")
        return value

    statuses = table.get("retry_statuses", sorted(default.retry_statuses))
    if isinstance(statuses, list):
        try:
            statuses = [int(s) for s in statuses]
        except (TypeError, ValueError):
            statuses = None
    if not isinstance(statuses, list) or not all(500 <= s <= 599 for s in statuses):
        raise source.error(f"{prefix}.retry_statuses", table.get("retry_statuses"),
                           "expected a list of 5xx statuses, e.g. [502, 503, 504]")
    path = _str(table, "health_path", source, prefix=prefix)
    if path and not path.startswith("/"):
        raise source.error(f"{prefix}.health_path", path, "must start with /")
    return HttpPolicy(
        retries=int(number("retries", 0, 10, integer=True)),
        retry_statuses=frozenset(statuses),
        retry_budget=number("retry_budget", 0, 1),
        retry_budget_min=number("retry_budget_min", 0, 10000),
        eject_after=int(number("eject_after", 1, 1000, integer=True)),
        eject_time=number("eject_time", 0.01, 3600),
        max_ejected_percent=number("max_ejected_percent", 0, 100),
        panic_threshold=number("panic_threshold", 0, 100),
        half_open_requests=int(number("half_open_requests", 1, 100, integer=True)),
        health_path=path,
        health_interval=number("health_interval", 0.05, 3600),
    )


def _build_endpoints(name: str, kind: ResourceKind, value: object,
                     source: _Source) -> dict[str, tuple[Endpoint, ...]]:
    key = f"resources.{name}.endpoints"
    if value is MISSING:
        raise source.error(key, MISSING, "required: one address per unit")
    if not isinstance(value, dict) or not value:
        raise source.error(key, value, "expected a table of unit = address")
    out: dict[str, tuple[Endpoint, ...]] = {}
    for unit, addresses in value.items():
        ukey = f"{key}.{unit}"
        if kind == "http":
            items = [addresses] if isinstance(addresses, str) else addresses
            if not isinstance(items, list) or not items \
                    or not all(isinstance(i, str) for i in items):
                raise source.error(ukey, addresses, "expected a base URL or a list of base URLs")
            out[unit] = tuple(_http_endpoint(name, unit, ukey, u, source) for u in items)
        else:
            if not isinstance(addresses, str):
                raise source.error(ukey, addresses, "expected one address \"host:port\"")
            hp = _host_port(addresses)
            if hp is None:
                raise source.error(ukey, addresses, "malformed address: expected host:port")
            out[unit] = (Endpoint(name, unit, hp.host, hp.port),)
    return out


def _http_endpoint(name: str, unit: str, key: str, url: str, source: _Source) -> Endpoint:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 \
            or not _valid_host(parts.hostname):
        raise source.error(key, url, "malformed URL: expected http(s)://host[:port][/path]")
    default = 443 if parts.scheme == "https" else 80
    return Endpoint(name, unit, parts.hostname.lower(), port or default, url=url.rstrip("/"))


def _alias(prefix: str, text: str, source: _Source) -> Alias:
    """``host`` (any port) or ``host:port``; IPv6 as ``[::1]`` or ``[::1]:3306``."""
    if text.endswith("]") or ":" not in text:
        host = text.strip("[]")
        if _valid_host(host):
            return Alias(host.lower())
    else:
        hp = _host_port(text)
        if hp is not None:
            return Alias(hp.host, hp.port)
    raise source.error(f"{prefix}.aliases", text, "malformed alias: expected host or host:port")


def _units(raw: dict[str, Any], resources: dict[str, Resource], source: _Source) -> tuple[str, ...]:
    declared = _list(raw, "units", source)
    if declared:
        return tuple(dict.fromkeys(declared))
    seen: dict[str, None] = {}
    for resource in resources.values():
        seen.update(dict.fromkeys(resource.endpoints))
    return tuple(seen)


def _check_endpoints_in_units(resources: dict[str, Resource], units: tuple[str, ...],
                              source: _Source) -> None:
    for resource in resources.values():
        for unit in resource.endpoints:
            if unit not in units:
                raise source.error(f"resources.{resource.name}.endpoints.{unit}",
                                   str(resource.endpoints[unit][0]),
                                   f"endpoint in an undeclared unit (units: {', '.join(units)})")


def _check_unique_addresses(resources: dict[str, Resource], source: _Source) -> None:
    """Two resources must not claim one address: routing would be ambiguous."""
    owner: dict[tuple[str, int | None], str] = {}
    for resource in resources.values():
        for key in dict.fromkeys(address_keys(resource)):
            other = owner.setdefault(key, resource.name)
            if other != resource.name:
                shown = key[0] if key[1] is None else f"{key[0]}:{key[1]}"
                raise source.error(f"resources.{resource.name}", shown,
                                   f"address already belongs to resource {other!r}")


def _control_url(control: dict[str, Any], path: Path, source: _Source) -> str:
    url = _str(control, "url", source, prefix="control")
    if not url:
        return (path.parent / "resil-state.json").as_uri()
    scheme = urlsplit(url).scheme
    if scheme not in _CONTROL_SCHEMES:
        raise source.error("control.url", url,
                           f"unsupported scheme: expected {', '.join(_CONTROL_SCHEMES)}")
    if scheme == "file" and not urlsplit(url).path:
        raise source.error("control.url", url, "file URL has no path")
    return url


# --------------------------------------------------------------------------- primitives

@dataclass(frozen=True)
class _HostPort:
    host: str
    port: int


def _host_port(text: str, allow_any_port: bool = False) -> _HostPort | None:
    """Parse ``host:port`` or ``[v6]:port``; None when malformed (port 0 only if allowed)."""
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    lowest = 0 if allow_any_port else 1
    if not sep or not port.isdigit() or not lowest <= int(port) < 65536 \
            or not _valid_host(host):
        return None
    return _HostPort(host.lower(), int(port))


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(host))


def _full(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _str(table: dict[str, Any], name: str, source: _Source, *, prefix: str = "",
         required: bool = False) -> str:
    key = _full(prefix, name)
    value = table.get(name, MISSING)
    if value is MISSING:
        if required:
            raise source.error(key, MISSING, "required")
        return ""
    if not isinstance(value, str):
        raise source.error(key, value, f"expected a string, got {type(value).__name__}")
    if required and not value.strip():
        raise source.error(key, value, "must not be empty")
    return value.strip()


def _bool(table: dict[str, Any], name: str, source: _Source, prefix: str = "") -> bool:
    value = table.get(name, False)
    if not isinstance(value, bool):
        raise source.error(_full(prefix, name), value, "expected true or false")
    return value


def _number(table: dict[str, Any], name: str, source: _Source, *, prefix: str,
            default: float) -> float:
    value = table.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise source.error(_full(prefix, name), value, "expected a number")
    return float(value)


def _list(table: dict[str, Any], name: str, source: _Source, prefix: str = "") -> list[str]:
    value = table.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise source.error(_full(prefix, name), value, "expected a list of non-empty strings")
    return [v.strip() for v in value]
