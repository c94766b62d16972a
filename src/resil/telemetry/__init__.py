"""Telemetry views: the admin endpoint, Prometheus text and OpenTelemetry observables.

They sit above the agent and read it through :class:`resil.runtime.AgentView`; the core
writes spans to the low sink :mod:`resil.spans` and counts in :mod:`resil.registry`.
"""
