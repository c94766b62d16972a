"""Every setting resil reads, declared once: its key, type, default and allowed values.

Each :class:`Setting` is a key of ``resil.toml`` and, at the same time, the
environment variable that overrides it (``RESIL_<SECTION>_<KEY>``). ``resil-run``'s
flags, ``docs/configuration.md``, :mod:`resil.config`'s checks and the defaults of
:class:`~resil.topology.Resource` and :class:`~resil.topology.HttpPolicy` are all built
from these declarations, so none of them can drift from another. Only
:mod:`resil.config` reads the environment.

Per-resource keys (``[resources.NAME]``) are listed in :data:`RESOURCE_KEYS`; their
variables are ``RESIL_RESOURCES_<NAME>_<KEY>`` with the resource name upper-cased and
``-`` turned into ``_``.

``make docs`` writes the configuration reference (:func:`markdown`) to docs/configuration.md.
"""

from __future__ import annotations

from ._entry import CONFIG_ENV as CONFIG_ENV
from ._record import KW_ONLY, dataclass

# typing is not imported at run time (it costs every start-up): the names below are the
# type checker's. In Kind, ``int`` is a whole number; ``ints`` a list of whole numbers
# (each in the range).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal, TypeVar

    Kind = Literal["str", "bool", "float", "int", "list", "ints", "endpoints"]
    _T = TypeVar("_T")
else:
    Kind = str


@dataclass(frozen=True)
class Setting:
    """One configuration key and its environment variable, with its default and range."""

    key: str
    """Dotted key: ``unit`` (top level) or ``control.url`` (``[control] url``)."""
    kind: Kind
    default: object
    """The value when the key is absent (None: none, or computed by :mod:`resil.config`)."""
    help: str
    _: KW_ONLY
    flag: bool = True
    """Whether ``resil-run`` offers it as a command-line flag."""
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    """The minimum itself is refused (``lock_timeout = 0`` would fail every write)."""
    choices: tuple[str, ...] = ()
    """The only values a ``str`` accepts (compared case-insensitively)."""
    measure: str = ""
    """What the number counts (``seconds``, ``bytes``), shown after its range."""
    kinds: tuple[str, ...] = ()
    """For a resource key: the resource kinds it applies to (empty: every kind)."""
    scheme_defaults: tuple[tuple[str, object], ...] = ()
    """``(scheme, default)`` pairs: a default that depends on ``control.url``'s scheme."""

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

    def default_for(self, scheme: str) -> object:
        """The default when the control plane's URL has ``scheme``."""
        return dict(self.scheme_defaults).get(scheme, self.default)

    def default_as(self, kind: type[_T]) -> _T:
        """The default, checked to be a ``kind`` (for typed dataclass defaults)."""
        if not isinstance(self.default, kind):
            raise TypeError(f"default of {self.key} is not a {kind.__name__}: "
                            f"{self.default!r}")
        return self.default

    def admits(self, number: float) -> bool:
        """Whether ``number`` is inside the declared range (and whole, for ``int(s)``)."""
        if self.kind in ("int", "ints") and not float(number).is_integer():
            return False
        # Written as "not inside" rather than "outside": NaN compares false both ways and
        # must be refused.
        if self.minimum is not None:
            inside = number > self.minimum if self.exclusive_minimum else number >= self.minimum
            if not inside:
                return False
        return self.maximum is None or number <= self.maximum

    @property
    def allowed(self) -> str:
        """The allowed values in words (``between 0 and 10 seconds``; ``""``: any)."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.minimum is None and self.maximum is None:
            return ""
        low = "" if self.minimum is None else _number(self.minimum)
        high = "" if self.maximum is None else _number(self.maximum)
        if self.minimum is None:
            span = f"at most {high}"
        elif self.maximum is None:
            span = f"more than {low}" if self.exclusive_minimum else f"at least {low}"
        elif self.exclusive_minimum:
            span = f"more than {low} and at most {high}"
        else:
            span = f"between {low} and {high}"
        whole = {"int": "a whole number ", "ints": "a list of whole numbers "}.get(self.kind, "")
        return f"{whole}{span}" + (f" {self.measure}" if self.measure else "")


def _number(value: float) -> str:
    """``60`` rather than ``60.0``, ``16777216`` rather than ``1.67772e+07``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


"""Path of the configuration file; ``resil-run --config`` sets it."""

SETTINGS: tuple[Setting, ...] = (
    Setting("unit", "str", None,
            "This process's own unit (zone, site, region); must be one of the units.",
            required=True),
    Setting("service", "str", "",
            "The name of the service this process belongs to: the scale figures "
            "(`desired_instances`, instances per unit) add up the instances of one service. "
            "Empty: `OTEL_SERVICE_NAME` when set, else `default`. Name it whenever several "
            "services share a control plane."),
    Setting("units", "list", (),
            "Declared units. Optional: when absent, the units are those named by the "
            "resources' endpoints; when present, every endpoint must be in one of them.",
            flag=False),
    Setting("disabled", "bool", False,
            "`1`: resil-run runs the program untouched and `resil.start()` does nothing."),
    Setting("disabled_integrations", "list", (),
            "Integrations not to install, comma-separated (e.g. `pymysql,redis`)."),
    Setting("log_level", "str", "WARNING", "Level of the `resil` logger.",
            choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    Setting("log_format", "str", "text",
            "How resil's own handler writes its lines to standard error: `text`, or `json` "
            "(one object per line: time, level, logger, message, pid). It writes only while "
            "the application has configured no logging; once the root logger has a "
            "handler, resil's lines go there instead, formatted by the application.",
            choices=("text", "json")),
    Setting("control.url", "str", None,
            "Where control state lives: `file:///path/state.json` (default: "
            "`resil-state.json` beside the configuration file). `redis://` comes with the "
            "distributed control plane."),
    Setting("control.signing_key_env", "str", "",
            "Name of the environment variable that holds the HMAC key. When set, every "
            "signal must carry a valid signature; unsigned and forged signals are rejected."),
    Setting("control.previous_signing_keys_env", "str", "",
            "Key rotation: name of the environment variable that holds the previous HMAC "
            "key(s), comma-separated. Signals signed with them are still accepted; new "
            "ones are signed with the current key only. Needs `signing_key_env`."),
    # The file backend polls a local stat (cheap); Redis polls only to reconcile missed
    # pub/sub messages, so every process asking it 20 times a second would be waste.
    Setting("control.poll_interval", "float", 1.0,
            "File control plane: seconds between checks where inotify is unavailable (on "
            "Linux the watch sleeps until the file changes). With Redis, changes arrive by "
            "pub/sub and this is only the reconciling poll.",
            minimum=0.001, maximum=60, measure="seconds", scheme_defaults=(("file", 0.05),)),
    Setting("control.heartbeat_interval", "float", 1.0,
            "Seconds between an agent's heartbeats (unit, applied epoch, in-flight "
            "transactions); every 20 ms while a resource is locked.",
            minimum=0.05, maximum=60, measure="seconds"),
    Setting("admin.listen", "str", "127.0.0.1:9464",
            "host:port of the admin endpoint (/healthz /readyz /metrics /state), served by "
            "the process that started the agent (gunicorn's master). Port 0: any free port "
            "(shown by `resil status`); `off`: none. When unset and OpenTelemetry's "
            "Prometheus exporter is on in the process (`OTEL_METRICS_EXPORTER` names "
            "`prometheus`) on its default port 9464, the default is 127.0.0.1:9465."),
    Setting("admin.drain_period", "float", 0.0,
            "Seconds an instance keeps serving after SIGTERM while /readyz says 503, before "
            "the application's own SIGTERM handling runs. 0: SIGTERM is left alone.",
            minimum=0, maximum=3600, measure="seconds"),
    Setting("admin.ready_requires_primary", "bool", False,
            "`/readyz` also answers 503 while a mysql/redis resource's primary does not "
            "accept TCP connections (checked at most every 2 s, 0.5 s timeout)."),
    Setting("admin.capacity", "float", 0.0,
            "Concurrent requests this instance can serve, for the scale signals; 0: the "
            "number of worker processes that report requests (at least 1).",
            minimum=0, maximum=100000),
    Setting("admin.target_utilization", "float", 0.6,
            "Target busy fraction for `desired_instances` (the HPA rule, tolerance 0.1).",
            minimum=0, exclusive_minimum=True, maximum=1),
    Setting("scaling.min", "int", 1,
            "Fewest instances of a service per unit: a number, or a table per unit "
            "(`{ beijing = 4, hangzhou = 2 }`, other units keep the default). Read by "
            "`resil scale` (and `resil monitor`), never by applications; "
            "`[scaling.services.NAME]` overrides any `[scaling]` key for one service.",
            flag=False, minimum=0, maximum=100000),
    Setting("scaling.max", "int", 100,
            "Most instances of a service per unit (a number, or a table per unit).",
            flag=False, minimum=1, maximum=100000),
    Setting("scaling.target_utilization", "float", 0.6,
            "Target busy fraction of a unit's instances: target tracking asks for "
            "`ceil(load / target)` instances (load: the sum of their utilizations).",
            flag=False, minimum=0, exclusive_minimum=True, maximum=1),
    Setting("scaling.startup_time", "float", 90.0,
            "Seconds from asking for an instance to its first request served: predictive "
            "scaling plans this far ahead, and `resil scale simulate` models it.",
            flag=False, minimum=0, maximum=3600, measure="seconds"),
    Setting("scaling.predictive", "bool", False,
            "Scale ahead of a forecast of the service's own load history (daily and weekly "
            "cycles; needs `resil[scale]` where `resil scale` runs). With less than a day of "
            "history it says so and leaves the decision to the other policies."),
    Setting("scaling.horizon", "float", 600.0,
            "Predictive: plan for the highest forecast load from now to `startup_time` "
            "plus this many seconds ahead (so capacity is not dropped just before a rise).",
            flag=False, minimum=0, maximum=86400, measure="seconds"),
    Setting("scaling.unit_loss_reserve", "bool", False,
            "Keep in every unit the capacity to absorb `reserve_fraction` of the largest "
            "other unit's load within the target utilization, so the loss of a unit is "
            "absorbed while its instances are recreated elsewhere.", flag=False),
    Setting("scaling.reserve_fraction", "float", 1.0,
            "The share of the largest other unit's load each unit keeps room for (1: all "
            "of it, right for two units; with N units spread evenly, 1/(N-1) suffices).",
            flag=False, minimum=0, maximum=1),
    Setting("scaling.interval", "float", 15.0,
            "Seconds between the recommendations of `resil scale --watch` and of `resil "
            "monitor` (which hosts the scaler when `[scaling]` is configured).",
            flag=False, minimum=1, maximum=600, measure="seconds"),
    Setting("scaling.history_days", "int", 14,
            "Days of one-minute load history kept per service and unit in the control "
            "plane (12 bytes a minute: 242 KB a series for 14 days).",
            flag=False, minimum=1, maximum=35, measure="days"),
    Setting("scaling.history_series", "int", 64,
            "Most (service, unit) series of history kept: with `history_days` the memory "
            "cap of the history (64 × 14 days: 15.5 MB). A series beyond it is not "
            "recorded, and `resil scale` says so.", flag=False, minimum=1, maximum=10000),
    Setting("sessions.resource", "str", "",
            "The redis resource that holds Flask, Django and Starlette sessions. Empty: the "
            "frameworks' own session stores are left alone.", flag=False),
    Setting("sessions.on_error", "str", "fail",
            "When Redis cannot be reached: `fail` answers 503; `degrade` serves the request "
            "with an empty session (a change it makes that cannot be saved still turns the "
            "answer into a 503: a write never silently disappears).",
            flag=False, choices=("fail", "degrade")),
    Setting("sessions.max_size", "int", 65536,
            "Largest session in bytes of JSON; a bigger one raises SessionTooLarge naming "
            "its largest key.", flag=False, minimum=1024, maximum=16 * 1024 * 1024,
            measure="bytes"),
    Setting("sessions.replica_wait", "float", 0.1,
            "Seconds a session write waits for the replicas in the other units (Redis "
            "WAIT), so that the next request, in any unit, reads it from its own unit's "
            "Redis. 0: read and write the primary only.",
            flag=False, minimum=0, maximum=10, measure="seconds"),
    Setting("routing.key", "str", "",
            "Where an incoming request carries its routing key (a user id, a shop id): "
            "`header:NAME`, `cookie:NAME` or `query:NAME`. With rules in the control state "
            "(`resil traffic rules`), a write request whose key belongs to another unit is "
            "refused or forwarded. Empty: no wrong-unit protection.", flag=False),
    Setting("routing.wrong_unit", "str", "reject",
            "What a write request (POST, PATCH, ...) whose routing key belongs to another "
            "unit gets: `reject` (409 naming the right unit), `forward` (sent on to that "
            "unit's instance of `routing.forward_to`) or `allow`.",
            flag=False, choices=("reject", "forward", "allow")),
    Setting("routing.forward_to", "str", "",
            "The http resource whose endpoints are this application's instances in each "
            "unit; required by `wrong_unit = \"forward\"`.", flag=False),
)
"""Every top-level and section key, in documentation order."""

_HTTP = ("http",)

RESOURCE_KEYS: tuple[Setting, ...] = (
    Setting("kind", "str", None, "What the resource is.", flag=False, required=True,
            choices=("mysql", "redis", "http")),
    Setting("primary", "str", None,
            "mysql/redis: the unit of the initial primary (control state overrides it). "
            "Required when more than one unit has an endpoint.", flag=False),
    Setting("endpoints", "endpoints", None,
            "One address per unit: `{ beijing = \"10.0.1.5:3306\" }` for mysql and redis; "
            "a list of base URLs per unit for http. In the environment: "
            "`beijing=10.0.1.5:3306,hangzhou=10.0.2.5:3306`.", flag=False, required=True),
    Setting("aliases", "list", (),
            "Other addresses the application uses for this resource: `host` (any port) "
            "or `host:port`.", flag=False),
    Setting("lock_timeout", "float", 5.0,
            "mysql/redis: longest time a write is held while a switch has the resource "
            "locked; then it fails with LockTimeoutError (never sent, safe to retry).",
            flag=False, minimum=0, exclusive_minimum=True, maximum=300, measure="seconds"),
    Setting("failover_hold", "float", 10.0,
            "mysql: longest time a new connection is held, instead of failing, while the "
            "primary cannot be reached (refused, timed out): until a failover publishes "
            "a new primary or the old one answers again; then the connect is made there. "
            "0 fails at once, as the driver does.",
            flag=False, kinds=("mysql",), minimum=0, maximum=300, measure="seconds"),
    Setting("auto_rejoin", "bool", False,
            "mysql/redis: `resil monitor` (the acting one) makes a fenced old primary a "
            "replica of the primary as soon as it answers again, as `resil db rejoin` "
            "would: the same checks, and never when it has writes the primary never got "
            "(it says so, and leaves it fenced).", flag=False, kinds=("mysql", "redis")),
    Setting("connect_timeout", "float", 5.0,
            "mysql/redis: upper bound of the application's connect timeout to this "
            "resource (a dead endpoint fails fast).",
            flag=False, minimum=0, exclusive_minimum=True, maximum=300, measure="seconds"),
    Setting("io_timeout", "float", 30.0,
            "mysql/redis: read/write timeout given to connections whose application set "
            "none (PyMySQL and redis-py wait forever on a frozen server by default); 0 "
            "leaves them as they are.", flag=False, minimum=0, maximum=3600, measure="seconds"),
    Setting("reads", "str", "primary",
            "mysql/redis: where the application's reads go. `primary`: every statement "
            "or command to the primary. `local`: provably read-only ones (mysql: "
            "autocommit statements; redis: key reads) to the own unit's replica (over "
            "connections of their own, with the same arguments) while it lags less than "
            "`max_lag`; a connection's (redis: a client's) own writes are always seen "
            "(docs/reads.md).", flag=False, kinds=("mysql", "redis"),
            choices=("primary", "local")),
    Setting("max_lag", "float", 1.0,
            "mysql/redis, with `reads = \"local\"`: the replica is read from only while "
            "it lags the primary by less than this; otherwise reads go to the primary.",
            flag=False, kinds=("mysql", "redis"), minimum=0, exclusive_minimum=True,
            maximum=3600, measure="seconds"),
    Setting("read_wait", "float", 0.05,
            "mysql, with `reads = \"local\"`: longest wait for the replica to apply a "
            "connection's own last write before a read; then the read goes to the "
            "primary (never a stale read of one's own write). 0: no wait.",
            flag=False, kinds=("mysql",), minimum=0, maximum=10, measure="seconds"),
    Setting("read_your_writes", "str", "connection",
            "mysql/redis, with `reads = \"local\"`: whose writes a read waits for. "
            "`connection`: the connection's own (redis: its client's connection pool's). "
            "`request`: also every write made while serving the same HTTP request (WSGI "
            "or ASGI: Flask, Django, Starlette), on any connection of the resource.",
            flag=False, kinds=("mysql", "redis"), choices=("connection", "request")),
    Setting("admin_user", "str", "",
            "mysql: account used by `resil db switch` and `resil monitor`, never by the "
            "application.", flag=False),
    Setting("admin_password_env", "str", "",
            "Name of the environment variable holding the admin password.", flag=False),
    Setting("replication_user", "str", "", "mysql: replication account.", flag=False),
    Setting("replication_password_env", "str", "",
            "Name of the environment variable holding the replication password.", flag=False),
    Setting("retries", "int", 2,
            "http: further attempts of a call that is safe to repeat (GET, HEAD, OPTIONS, "
            "PUT, DELETE, or one with an `Idempotency-Key` header) after a failure before "
            "any response, or a status in `retry_statuses`; the first goes to another unit.",
            flag=False, kinds=_HTTP, minimum=0, maximum=10),
    Setting("retry_statuses", "ints", (502, 503, 504),
            "http: response statuses that are retried like a connection failure.",
            flag=False, kinds=_HTTP, minimum=500, maximum=599, measure="(5xx statuses)"),
    Setting("retry_budget", "float", 0.2,
            "http: retries allowed as a fraction of the calls of the last 10 s, so that "
            "retries cannot multiply an outage.", flag=False, kinds=_HTTP, minimum=0, maximum=1),
    Setting("retry_budget_min", "float", 3.0,
            "http: retries per second allowed whatever the budget (for low traffic).",
            flag=False, kinds=_HTTP, minimum=0, maximum=10000),
    Setting("eject_after", "int", 5,
            "http: consecutive failures (connection errors or 5xx) that eject an endpoint.",
            flag=False, kinds=_HTTP, minimum=1, maximum=1000),
    Setting("eject_failure_percent", "float", 0.0,
            "http: also eject an endpoint whose calls failed at least this percentage of "
            "the time over the last 10 s (at least `eject_min_calls` calls): a lossy "
            "endpoint that rarely fails `eject_after` calls in a row (Envoy's "
            "failure-percentage detection); 0: off.", flag=False, kinds=_HTTP, minimum=0,
            maximum=100, measure="percent"),
    Setting("eject_min_calls", "int", 10,
            "http: calls to an endpoint within 10 s before `eject_failure_percent` judges it.",
            flag=False, kinds=_HTTP, minimum=1, maximum=100000),
    Setting("eject_time", "float", 30.0,
            "http: seconds of the first ejection; each repeated ejection lasts one more "
            "multiple (capped at 10). Then a half-open probe decides.",
            flag=False, kinds=_HTTP, minimum=0.01, maximum=3600, measure="seconds"),
    Setting("max_ejected_percent", "float", 50.0,
            "http: at most this share of a resource's endpoints is ejected at once (at "
            "least one may always be).", flag=False, kinds=_HTTP, minimum=0, maximum=100,
            measure="percent"),
    Setting("panic_threshold", "float", 50.0,
            "http: below this percentage of healthy endpoints, health is ignored and every "
            "endpoint of a unit with traffic takes calls (Envoy's panic mode).",
            flag=False, kinds=_HTTP, minimum=0, maximum=100, measure="percent"),
    Setting("half_open_requests", "int", 1,
            "http: calls let through at once to an endpoint whose ejection ended; one "
            "success brings it back, a failure ejects it again for longer.",
            flag=False, kinds=_HTTP, minimum=1, maximum=100),
    Setting("health_path", "str", "",
            "http: path of an active health check (e.g. `/healthz`), asked of every "
            "endpoint by one background thread; empty: passive detection only.",
            flag=False, kinds=_HTTP),
    Setting("health_interval", "float", 5.0,
            "http: seconds between active health checks of an endpoint.",
            flag=False, kinds=_HTTP, minimum=0.05, maximum=3600, measure="seconds"),
)
"""Keys of a ``[resources.NAME]`` table."""


def resource_env(resource: str, key: str) -> str:
    """The environment variable overriding ``[resources.<resource>] <key>``."""
    return f"RESIL_RESOURCES_{resource.upper().replace('-', '_')}_{key.upper()}"


def by_key() -> dict[str, Setting]:
    """Settings indexed by dotted key."""
    return {s.key: s for s in SETTINGS}


def section(name: str) -> dict[str, Setting]:
    """The settings of the table ``[name]`` (``""``: the top level), by name in it."""
    return {s.name: s for s in SETTINGS if s.section == name}


def resource_keys() -> dict[str, Setting]:
    """The keys of a ``[resources.NAME]`` table, by name."""
    return {s.name: s for s in RESOURCE_KEYS}


def resource_default(name: str, kind: type[_T]) -> _T:
    """The declared default of resource key ``name``, checked to be a ``kind``."""
    return resource_keys()[name].default_as(kind)


def _default_text(setting: Setting) -> str:
    if setting.required:
        return "required"
    if setting.scheme_defaults:
        shown = [f"{_shown(d)} ({scheme}://)" for scheme, d in setting.scheme_defaults]
        return ", ".join(shown + [f"{_shown(setting.default)} otherwise"])
    return _shown(setting.default)


def _shown(default: object) -> str:
    if default in (None, "", ()):
        return "—"
    if isinstance(default, bool):
        return "`1`" if default else "`0`"
    if isinstance(default, tuple):
        return "`" + ",".join(map(str, default)) + "`"
    return f"`{default}`"


def _allowed_text(setting: Setting) -> str:
    if setting.choices:
        return ", ".join(f"`{c}`" for c in setting.choices)
    return setting.allowed or "—"


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
        "Each process parses the file once per content: the parsed tables are kept in "
        "`$XDG_CACHE_HOME/resil` (else `~/.cache/resil`; the folder mode 0700, one "
        "entry per configuration file) and used only when the file's bytes are exactly "
        "those they were parsed from, so an edit is always read. Where the folder cannot "
        "be written, the file is parsed at every start, as before.",
        "",
        "| key | environment | resil-run flag | default | allowed | meaning |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| — | `{CONFIG_ENV}` | `--config` | `./resil.toml` | — | "
        "Path of the configuration file. |",
    ]
    for s in SETTINGS:
        table = f"[{s.section}] " if s.section else ""
        flag = f"`{s.option}`" if s.flag else "—"
        out.append(f"| `{table}{s.name}` | `{s.env}` | {flag} | {_default_text(s)} | "
                   f"{_allowed_text(s)} | {s.help} |")
    out += [
        "",
        "## Resources",
        "",
        "Each `[resources.NAME]` table declares one resource. Its keys are overridden by "
        "`RESIL_RESOURCES_<NAME>_<KEY>` (NAME upper-cased, `-` as `_`; e.g. "
        "`RESIL_RESOURCES_ORDERS_DB_PRIMARY`).",
        "",
        "| key | default | allowed | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for s in RESOURCE_KEYS:
        out.append(f"| `{s.name}` | {_default_text(s)} | {_allowed_text(s)} | {s.help} |")
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
        "A misspelt variable is an error too, as a misspelt key in the file is. A `RESIL_*` "
        "variable that sets nothing is refused (exit 2, its value not shown) when it "
        "starts like the variables of a table (`RESIL_CONTROL_`, `RESIL_ADMIN_`, "
        "`RESIL_SESSIONS_`, `RESIL_ROUTING_`, `RESIL_RESOURCES_`) or is close to a real "
        "one, with the likely name (`RESIL_UNTI: not a resil setting; did you mean "
        "RESIL_UNIT?`). Any other `RESIL_*` name may belong to someone else (a secret "
        "that a `*_env` key names is never questioned): it is ignored, with a warning. An "
        "unknown name in `disabled_integrations` is refused by `resil-run` and `resil "
        "config check`, and logged by `resil.start()`.",
        "",
    ]
    return "\n".join(out)


def default_poll_interval(scheme: str) -> float:
    """The declared default of ``control.poll_interval`` for a control-plane URL scheme."""
    value = by_key()["control.poll_interval"].default_for(scheme)
    if not isinstance(value, (int, float)):
        raise TypeError(f"default of control.poll_interval for {scheme!r} is not a number")
    return float(value)
