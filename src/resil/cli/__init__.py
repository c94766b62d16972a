"""Command-line entry points: ``resil`` (operator) and ``resil-run`` (process bootstrap)."""
