"""resil's own metrics in the Prometheus text exposition format (``GET /metrics``).

Names follow Prometheus conventions (``resil_`` prefix, ``_total`` counters, base units).
Counters with labels are kept by :func:`resil.counters.count` as ``name:label:...``
events (so gunicorn workers report them in their heartbeats like any other) and are
written out by the :data:`LABELED` table.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from .. import counters
from .._version import __version__
from ..readiness import readiness
from ..requeststats import BUCKETS, combine
from ..scale import desired_instances

if TYPE_CHECKING:
    from ..runtime import AgentView

Beats = list[dict[str, Any]]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items())) + "}"


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        self.lines.append(f"{name}{_labels(**labels)} {_number(value)}")


def _number(value: float) -> str:
    """A sample value exactly: a whole number in full (``61468672``, where ``:g`` printed
    ``6.14687e+07`` and a counter above a million moved in steps of hundreds), any other
    float as the shortest text that reads back as the same float, and the exposition
    format's ``NaN`` / ``+Inf`` / ``-Inf``."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, int) or (value.is_integer() and abs(value) < 2 ** 53):
        return str(int(value))
    return repr(float(value))


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def instance_figures(agent: AgentView, children: Beats) -> dict[str, float]:
    """This instance's capacity, utilization and saturation (see :mod:`resil.scale`),
    from its own requests and those of its workers (``children``, their heartbeats)."""
    requests, workers = _instance(children)
    capacity = agent.config.capacity or max(workers, 1)
    sampler = agent.sampler
    utilization = sampler.utilization(requests["seconds"], capacity) if sampler else 0.0
    saturation = max(0, requests["in_flight"] - capacity) + counters.holding()
    return {"capacity": capacity, "utilization": utilization, "saturation": saturation}


def scale_figures(agent: AgentView, children: Beats) -> dict[str, Any]:
    """:func:`instance_figures`, plus the service's instances (in all and per unit) and
    ``desired_instances`` over the last complete window of the fleet's sums
    (:meth:`~resil.control.base.ControlPlane.fleet_load`). Before a window has
    completed, the fleet is this instance alone."""
    figures: dict[str, Any] = instance_figures(agent, children)
    load = {unit: (n, u) for unit, (n, u) in agent.fleet_load().items() if n > 0}
    per_unit = {unit: n for unit, (n, _) in load.items()}
    total = sum(u for _, u in load.values())
    if not per_unit:
        per_unit, total = {agent.config.unit: 1}, figures["utilization"]
    instances = sum(per_unit.values())
    figures.update(instances=instances, per_unit=per_unit, load=load,
                   desired_instances=desired_instances(
                       instances, total, agent.config.target_utilization))
    return figures


def _instance_counters(children: Beats) -> tuple[dict[str, float], dict[str, int]]:
    """resil's event counters and faults of this process plus its live workers (their
    heartbeats carry theirs: the moves and holds happen where the connections are)."""
    stats: dict[str, float] = dict(counters.stats())
    faults: dict[str, int] = dict(counters.faults())
    for beat in children:
        for key, value in dict(beat.get("events") or {}).items():
            stats[key] = max(stats.get(key, 0), value) if key == "max_hold_s" \
                else stats.get(key, 0) + value
        for key, value in dict(beat.get("faults") or {}).items():
            faults[key] = faults.get(key, 0) + int(value)
    return stats, faults


def _instance(children: Beats) -> tuple[dict[str, Any], int]:
    """This instance's requests (itself and its workers), and how many workers report."""
    snapshots = [counters.requests().snapshot()]
    for beat in children:
        if beat.get("requests"):
            snapshots.append(beat["requests"])
    return combine(snapshots), len(snapshots) - 1


def _scale_metrics(agent: AgentView, children: Beats, out: _Text) -> None:
    if agent.sampler is None:
        return
    figures = scale_figures(agent, children)
    for name, kind, help_text in (
            ("capacity", "gauge", "Concurrent requests this instance can serve."),
            ("utilization", "gauge", "Busy fraction of capacity over the last minute."),
            ("saturation", "gauge", "Requests beyond capacity plus writes held now."),
            ("instances", "gauge",
             "Instances of this service reporting utilization (the last complete window)."),
            ("desired_instances", "gauge",
             "Instances for the target utilization (the HPA rule, tolerance 0.1).")):
        out.family(f"resil_scale_{name}", kind, help_text)
        out.sample(f"resil_scale_{name}", figures[name])
    out.family("resil_scale_unit_instances", "gauge",
               "Instances of this service reporting utilization, per unit.")
    for unit, count in sorted(figures["per_unit"].items()):
        out.sample("resil_scale_unit_instances", count, service=agent.config.service,
                   unit=unit)
    _recommendation_metrics(agent, out, figures["load"])


def _recommendation_metrics(agent: AgentView, out: _Text,
                            load: dict[str, tuple[int, float]]) -> None:
    """The recommendation of ``resil scale`` for this service, per unit and per policy
    (the policies' figures only from a fresh recommendation)."""
    answer = agent.scale_answer(load)
    service = agent.config.service
    out.family("resil_scale_recommended_instances", "gauge",
               "Instances per unit recommended by resil scale's policies (the fallback, "
               "target tracking clamped to min/max, while no fresh recommendation exists).")
    for unit, entry in sorted(answer["units"].items()):
        out.sample("resil_scale_recommended_instances", entry.get("desired", 0),
                   service=service, unit=unit)
    out.family("resil_scale_policy_instances", "gauge",
               "Instances per unit asked by each scaling policy (absent: it asks nothing).")
    for unit, entry in sorted(answer["units"].items()):
        for policy, figure in sorted(dict(entry.get("policies") or {}).items()):
            if isinstance(figure, dict) and figure.get("instances") is not None:
                out.sample("resil_scale_policy_instances", figure["instances"],
                           service=service, unit=unit, policy=policy)
    out.family("resil_scale_recommendation_fresh", "gauge",
               "1 when the recommendation served comes from a running resil scale; 0 when "
               "it is the fallback.")
    out.sample("resil_scale_recommendation_fresh", 1 if answer["source"] == "resil scale"
               else 0, service=service)


def _request_metrics(children: Beats, out: _Text) -> None:
    requests = _instance(children)[0]
    out.family("resil_http_requests_in_flight", "gauge",
               "Requests being served (this process and its workers).")
    out.sample("resil_http_requests_in_flight", requests["in_flight"])
    out.family("resil_http_requests_total", "counter", "Requests served, by status class.")
    for klass, count in sorted(requests["by_class"].items()):
        out.sample("resil_http_requests_total", count, status_class=klass)
    out.family("resil_http_request_duration_seconds", "histogram", "Request latency.")
    running = 0
    for bound, count in zip((*BUCKETS, float("inf")), requests["buckets"], strict=True):
        running += count
        out.sample("resil_http_request_duration_seconds_bucket", running,
                   le="+Inf" if bound == float("inf") else f"{bound:g}")
    out.sample("resil_http_request_duration_seconds_sum", requests["seconds"])
    out.sample("resil_http_request_duration_seconds_count", running)


LABELED: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("connect_failures", "Failed connection attempts per endpoint.", ("endpoint",)),
    ("http_calls", "Attempts of calls to http resources, by the unit of the endpoint used.",
     ("resource", "endpoint_unit")),
    ("http_retries", "Retries of calls to http resources.", ("resource",)),
    ("http_retry_refused", "Retries the retry budget refused.", ("resource",)),
    ("http_ejections", "Ejections of http endpoints by outlier detection.",
     ("resource", "endpoint")),
    ("http_restored", "Ejected http endpoints brought back by a successful probe.",
     ("resource", "endpoint")),
    ("db_reads", "Reads of reads = \"local\" resources, by the reading process's unit and "
     "outcome: local (served by the own unit's replica), pinned (session state keeps the "
     "connection on the primary), fallback_lag, fallback_wait (the replica had not yet "
     "applied the connection's own write), fallback_error, primary (the own unit holds "
     "the primary).", ("resource", "unit", "outcome")),
    ("chaos_injected", "Calls a chaos fault changed, by effect (latency, loss, refused, "
     "reset, timeout, error).", ("fault", "resource", "effect")),
)
"""resil's counters kept as ``name:label:label`` events: metric name, help, label names."""


def _endpoint_health(agent: AgentView, children: Beats, out: _Text) -> None:
    """How many processes (this one and its workers) avoid each http endpoint now."""
    avoided: dict[tuple[str, str, str], int] = {}
    reports = [agent.router.health_snapshot()] + [
        dict(beat.get("http_health") or {}) for beat in children]
    for name, resource in agent.config.resources.items():
        if resource.kind != "http":
            continue
        for endpoints in resource.endpoints.values():
            for endpoint in endpoints:
                avoided[(name, str(endpoint), endpoint.unit)] = sum(
                    1 for report in reports
                    if dict(report.get(name) or {}).get(str(endpoint), {}).get(
                        "state", "healthy") != "healthy")
    out.family("resil_http_endpoint_unhealthy", "gauge",
               "Processes that avoid the endpoint now (ejected, half-open or failing its "
               "active check).")
    for (name, address, unit), count in sorted(avoided.items()):
        out.sample("resil_http_endpoint_unhealthy", count, resource=name, endpoint=address,
                   unit=unit)


def prometheus_text(agent: AgentView) -> str:
    """Every metric of ``agent`` and of resil's process-wide counters.

    The control plane is read twice per scrape, each a read whose size does not grow
    with the fleet: the workers' heartbeats (:meth:`AgentView.children`) and the
    fleet's sums (:meth:`AgentView.fleet_load`)."""
    state = agent.state
    children = agent.children()
    out = _Text()
    out.family("resil_info", "gauge", "The agent's unit and version (value always 1).")
    out.sample("resil_info", 1, unit=agent.config.unit, service=agent.config.service,
               version=__version__)
    out.family("resil_applied_epoch", "gauge", "Epoch of the control state the agent applied.")
    out.sample("resil_applied_epoch", state.epoch)
    out.family("resil_ready", "gauge", "1 when this instance should get traffic (/readyz).")
    out.sample("resil_ready", 0 if readiness(agent) else 1)
    out.family("resil_unit_weight", "gauge", "Traffic weight of each unit (0: cut).")
    for unit, weight in state.weights.items():
        out.sample("resil_unit_weight", weight, unit=unit)
    resources = [n for n, r in agent.config.resources.items() if r.kind != "http"]
    out.family("resil_resource_locked", "gauge",
               "1 while a switch or failover holds the resource's write lock.")
    for name in resources:
        out.sample("resil_resource_locked", 1 if name in state.locks else 0, resource=name)
    out.family("resil_primary_info", "gauge", "The unit of each resource's primary (value 1).")
    for name in resources:
        unit = state.primary_unit(agent.config.resources[name]) or ""
        out.sample("resil_primary_info", 1, resource=name, unit=unit)
    out.family("resil_chaos_faults_active", "gauge",
               "Chaos faults published and not expired, per resource.")
    now = time.time()
    for name in agent.config.resources:
        out.sample("resil_chaos_faults_active",
                   sum(1 for f in state.faults if f.resource == name and f.active(now)),
                   resource=name)
    out.family("resil_in_flight", "gauge",
               "Open transactions and running statements per resource.")
    in_flight = agent.in_flight()
    for beat in children:
        for name, busy in dict(beat.get("in_flight") or {}).items():
            in_flight[name] = in_flight.get(name, 0) + int(busy)
    for name, busy in in_flight.items():
        out.sample("resil_in_flight", busy, resource=name)
    stats, faults = _instance_counters(children)
    max_hold = stats.pop("max_hold_s", 0.0)
    held_ms = stats.pop("held_ms_total", 0)
    out.family("resil_events_total", "counter",
               "resil's own events: held writes, moved connections, replays, timeouts.")
    for event, count in sorted(stats.items()):
        if ":" not in event:
            out.sample("resil_events_total", count, event=event)
    out.family("resil_hold_seconds_total", "counter", "Time writes spent held by the gate.")
    out.sample("resil_hold_seconds_total", held_ms / 1000)
    out.family("resil_hold_seconds_max", "gauge", "Longest single hold of a write.")
    out.sample("resil_hold_seconds_max", max_hold)
    for name, help_text, labels in LABELED:
        out.family(f"resil_{name}_total", "counter", help_text)
        for key, count in sorted(stats.items()):
            if key.startswith(name + ":"):
                values = key.split(":", len(labels))[1:]
                out.sample(f"resil_{name}_total", count, **dict(zip(labels, values, strict=True)))
    _endpoint_health(agent, children, out)
    _request_metrics(children, out)
    _scale_metrics(agent, children, out)
    cpu = os.times()
    out.family("resil_process_cpu_seconds_total", "counter",
               "CPU time of the process serving this endpoint (user + system).")
    out.sample("resil_process_cpu_seconds_total", cpu.user + cpu.system)
    out.family("resil_process_resident_memory_bytes", "gauge", "Resident memory (RSS).")
    out.sample("resil_process_resident_memory_bytes", _rss_bytes())
    out.family("resil_faults_total", "counter",
               "Exceptions in resil's own code, caught by the fail-open guard.")
    for where, count in sorted(faults.items()):
        out.sample("resil_faults_total", count, where=where)
    return "\n".join(out.lines) + "\n"
