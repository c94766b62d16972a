"""Operator procedures: the only place that drives database servers directly."""
