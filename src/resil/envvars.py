"""Every setting resil reads, defined once.

Each :class:`Setting` is a key of ``resil.toml`` and, at the same time, the
environment variable that overrides it (``RESIL_<SECTION>_<KEY>``). ``resil-run``'s
flags and ``docs/configuration.md`` are both generated from :data:`SETTINGS`, so the
three can never drift apart. Only :mod:`resil.config` reads the environment.

Per-resource keys (``[resources.NAME]``) are listed in :data:`RESOURCE_KEYS`; their
variables are ``RESIL_RESOURCES_<NAME>_<KEY>`` with the resource name upper-cased and
``-`` turned into ``_``.

``make docs`` writes the configuration reference (:func:`markdown`) to docs/configuration.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["str", "bool", "float", "list", "endpoints"]


@dataclass(frozen=True)
class Setting:
    """One configuration key and its environment variable."""

    key: str
    """Dotted key: ``unit`` (top level) or ``control.url`` (``[control] url``)."""
    kind: Kind
    default: object
    help: str
    flag: bool = True
    """Whether ``resil-run`` offers it as a command-line flag."""

    @property
    def env(self) -> str:
        """The environment variable that overrides this key."""
        return "RESIL_" + self.key.upper().replace(".", "_")

    @property
    def option(self) -> str:
        """The ``resil-run`` flag, e.g. ``--control-url``."""
        return "--" + self.key.replace(".", "-").replace("_", "-")

    @property
    def section(self) -> str:
        """The TOML table the key lives in (``""`` for the top level)."""
        return self.key.rpartition(".")[0]

    @property
    def name(self) -> str:
        """The key's name inside its table."""
        return self.key.rpartition(".")[2]


CONFIG_ENV = "RESIL_CONFIG"
"""Path of the configuration file; ``resil-run --config`` sets it."""

SETTINGS: tuple[Setting, ...] = (
    Setting("unit", "str", None,
            "This process's own unit (zone, site, region). Required; must be one of the units."),
    Setting("units", "list", (),
            "Declared units. Optional: when absent, the units are those named by the "
            "resources' endpoints; when present, every endpoint must be in one of them.",
            flag=False),
    Setting("disabled", "bool", False,
            "`1`: resil-run runs the program untouched and `resil.start()` does nothing."),
    Setting("disabled_integrations", "list", (),
            "Integrations not to install, comma-separated (e.g. `pymysql,redis`)."),
    Setting("log_level", "str", "WARNING",
            "Level of the `resil` logger: DEBUG, INFO, WARNING, ERROR."),
    Setting("control.url", "str", None,
            "Where control state lives: `file:///path/state.json` (default: "
            "`resil-state.json` beside the configuration file). `redis://` comes with the "
            "distributed control plane."),
    Setting("control.signing_key_env", "str", "",
            "Name of the environment variable that holds the HMAC key. When set, every "
            "signal must carry a valid signature; unsigned and forged signals are rejected."),
    Setting("control.poll_interval", "float", 0.05,
            "File control plane: seconds between checks where inotify is unavailable (on "
            "Linux the watch sleeps until the file changes). With Redis, changes arrive by "
            "pub/sub and this is the reconciling poll: default 1.0 there."),
    Setting("control.heartbeat_interval", "float", 1.0,
            "Seconds between an agent's heartbeats (unit, applied epoch, in-flight "
            "transactions); every 20 ms while a resource is locked."),
    Setting("admin.listen", "str", "127.0.0.1:9464",
            "host:port of the admin endpoint (/healthz /readyz /metrics /state), served by "
            "the process that started the agent (gunicorn's master). Port 0: any free port "
            "(shown by `resil status`); `off`: none."),
    Setting("admin.drain_period", "float", 0.0,
            "Seconds an instance keeps serving after SIGTERM while /readyz says 503, before "
            "the application's own SIGTERM handling runs. 0: SIGTERM is left alone."),
    Setting("admin.ready_requires_primary", "bool", False,
            "`/readyz` also answers 503 while a mysql/redis resource's primary does not "
            "accept TCP connections (checked at most every 2 s, 0.5 s timeout)."),
    Setting("admin.capacity", "float", 0.0,
            "Concurrent requests this instance can serve, for the scale signals; 0: the "
            "number of worker processes that report requests (at least 1)."),
    Setting("admin.target_utilization", "float", 0.6,
            "Target busy fraction for `desired_instances` (the HPA rule, tolerance 0.1)."),
    Setting("sessions.resource", "str", "",
            "The redis resource that holds Flask and Django sessions. Empty: the "
            "frameworks' own session stores are left alone.", flag=False),
    Setting("sessions.on_error", "str", "fail",
            "When Redis cannot be reached: `fail` answers 503; `degrade` serves the request "
            "with an empty session (a change it makes that cannot be saved still turns the "
            "answer into a 503: a write never silently disappears).", flag=False),
    Setting("sessions.max_size", "float", 65536,
            "Largest session in bytes of JSON; a bigger one raises SessionTooLarge naming "
            "its largest key.", flag=False),
    Setting("sessions.replica_wait", "float", 0.1,
            "Seconds a session write waits for the replicas in the other units (Redis "
            "WAIT), so that the next request, in any unit, reads it from its own unit's "
            "Redis. 0: read and write the primary only.", flag=False),
    Setting("routing.key", "str", "",
            "Where an incoming request carries its routing key (a user id, a shop id): "
            "`header:NAME`, `cookie:NAME` or `query:NAME`. With rules in the control state "
            "(`resil traffic rules`), a write request whose key belongs to another unit is "
            "refused or forwarded. Empty: no wrong-unit protection.", flag=False),
    Setting("routing.wrong_unit", "str", "reject",
            "What a write request (POST, PATCH, ...) whose routing key belongs to another "
            "unit gets: `reject` (409 naming the right unit), `forward` (sent on to that "
            "unit's instance of `routing.forward_to`) or `allow`.", flag=False),
    Setting("routing.forward_to", "str", "",
            "The http resource whose endpoints are this application's instances in each "
            "unit; required by `wrong_unit = \"forward\"`.", flag=False),
)
"""Every top-level and section key, in documentation order."""

RESOURCE_KEYS: tuple[Setting, ...] = (
    Setting("kind", "str", None, "`mysql`, `redis` or `http`. Required.", flag=False),
    Setting("primary", "str", None,
            "mysql/redis: the unit of the initial primary (control state overrides it). "
            "Required when more than one unit has an endpoint.", flag=False),
    Setting("endpoints", "endpoints", None,
            "One address per unit: `{ beijing = \"10.0.1.5:3306\" }` for mysql and redis; "
            "a list of base URLs per unit for http. In the environment: "
            "`beijing=10.0.1.5:3306,hangzhou=10.0.2.5:3306`.", flag=False),
    Setting("aliases", "list", (),
            "Other addresses the application uses for this resource: `host` (any port) "
            "or `host:port`.", flag=False),
    Setting("lock_timeout", "float", 5.0,
            "mysql/redis: longest time a write is held while a switch has the resource "
            "locked; then it fails with LockTimeoutError (never sent, safe to retry).",
            flag=False),
    Setting("connect_timeout", "float", 5.0,
            "mysql/redis: upper bound of the application's connect timeout to this "
            "resource (a dead endpoint fails fast).", flag=False),
    Setting("io_timeout", "float", 30.0,
            "mysql/redis: read/write timeout given to connections whose application set "
            "none (PyMySQL and redis-py wait forever on a frozen server by default); 0 "
            "leaves them as they are.", flag=False),
    Setting("admin_user", "str", "",
            "mysql: account used by `resil db switch` and `resil monitor`, never by the "
            "application.", flag=False),
    Setting("admin_password_env", "str", "",
            "Name of the environment variable holding the admin password.", flag=False),
    Setting("replication_user", "str", "", "mysql: replication account.", flag=False),
    Setting("replication_password_env", "str", "",
            "Name of the environment variable holding the replication password.", flag=False),
    Setting("retries", "float", 2,
            "http: further attempts of a call that is safe to repeat (GET, HEAD, OPTIONS, "
            "PUT, DELETE, or one with an `Idempotency-Key` header) after a failure before "
            "any response, or a status in `retry_statuses`; the first goes to another unit.",
            flag=False),
    Setting("retry_statuses", "list", (502, 503, 504),
            "http: response statuses that are retried like a connection failure.",
            flag=False),
    Setting("retry_budget", "float", 0.2,
            "http: retries allowed as a fraction of the calls of the last 10 s, so that "
            "retries cannot multiply an outage.", flag=False),
    Setting("retry_budget_min", "float", 3.0,
            "http: retries per second allowed whatever the budget (for low traffic).",
            flag=False),
    Setting("eject_after", "float", 5,
            "http: consecutive failures (connection errors or 5xx) that eject an endpoint.",
            flag=False),
    Setting("eject_time", "float", 30.0,
            "http: seconds of the first ejection; each repeated ejection lasts one more "
            "multiple (capped at 10). Then a half-open probe decides.", flag=False),
    Setting("max_ejected_percent", "float", 50.0,
            "http: at most this share of a resource's endpoints is ejected at once (at "
            "least one may always be).", flag=False),
    Setting("panic_threshold", "float", 50.0,
            "http: below this percentage of healthy endpoints, health is ignored and every "
            "endpoint of a unit with traffic takes calls (Envoy's panic mode).", flag=False),
    Setting("half_open_requests", "float", 1,
            "http: calls let through at once to an endpoint whose ejection ended; one "
            "success brings it back, a failure ejects it again for longer.", flag=False),
    Setting("health_path", "str", "",
            "http: path of an active health check (e.g. `/healthz`), asked of every "
            "endpoint by one background thread; empty: passive detection only.", flag=False),
    Setting("health_interval", "float", 5.0,
            "http: seconds between active health checks of an endpoint.", flag=False),
)
"""Keys of a ``[resources.NAME]`` table."""


def resource_env(resource: str, key: str) -> str:
    """The environment variable overriding ``[resources.<resource>] <key>``."""
    return f"RESIL_RESOURCES_{resource.upper().replace('-', '_')}_{key.upper()}"


def by_key() -> dict[str, Setting]:
    """Settings indexed by dotted key."""
    return {s.key: s for s in SETTINGS}


def _default_text(setting: Setting) -> str:
    if setting.default in (None, "", ()):
        return "—"
    if isinstance(setting.default, bool):
        return "`1`" if setting.default else "`0`"
    if isinstance(setting.default, tuple):
        return "`" + ",".join(map(str, setting.default)) + "`"
    return f"`{setting.default}`"


def markdown() -> str:
    """The configuration reference (``docs/configuration.md``)."""
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by `make docs` from src/resil/envvars.py; "
        "do not edit by hand. -->",
        "",
        "resil reads `resil.toml` (the path comes from `resil-run --config`, the "
        f"`{CONFIG_ENV}` environment variable, or `./resil.toml`). Every key can be "
        "overridden by an environment variable, and most by a `resil-run` flag. "
        "Precedence: flag > environment > file > default.",
        "",
        "| key | environment | resil-run flag | default | meaning |",
        "| --- | --- | --- | --- | --- |",
        f"| — | `{CONFIG_ENV}` | `--config` | `./resil.toml` | Path of the configuration file. |",
    ]
    for s in SETTINGS:
        table = f"[{s.section}] " if s.section else ""
        flag = f"`{s.option}`" if s.flag else "—"
        out.append(f"| `{table}{s.name}` | `{s.env}` | {flag} | {_default_text(s)} | {s.help} |")
    out += [
        "",
        "## Resources",
        "",
        "Each `[resources.NAME]` table declares one resource. Its keys are overridden by "
        "`RESIL_RESOURCES_<NAME>_<KEY>` (NAME upper-cased, `-` as `_`; e.g. "
        "`RESIL_RESOURCES_ORDERS_DB_PRIMARY`).",
        "",
        "| key | default | meaning |",
        "| --- | --- | --- |",
    ]
    for s in RESOURCE_KEYS:
        out.append(f"| `{s.name}` | {_default_text(s)} | {s.help} |")
    out += [
        "",
        "## Errors",
        "",
        "A bad value stops `resil-run` (exit 2) and `resil config check` (exit 2) with one "
        "line naming the source (file or environment variable), the key and the value, "
        "for example:",
        "",
        "```",
        "resil.toml: resources.orders-db.endpoints.hangzhou = '10.0.2.5': "
        "malformed address: expected host:port",
        "```",
        "",
    ]
    return "\n".join(out)

