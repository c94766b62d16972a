"""Telemetry: the admin endpoint and resil's own metrics."""
