"""Imported by Python at start-up under ``resil-run``: start the agent, then chain."""

try:
    from resil.bootstrap import boot, chain_sitecustomize
except Exception as exc:  # resil is not importable here: run the program untouched
    import sys
    print(f"resil: agent not started: {exc!r}", file=sys.stderr)
else:
    boot()
    chain_sitecustomize()
