"""Type names the start-up modules keep for the type checker alone (typing is not
imported at run time) must say what the run-time values say."""

from __future__ import annotations

import ast
import inspect

from resil import topology


def _literal_in_type_checking(module: object, name: str) -> tuple[str, ...]:
    tree = ast.parse(inspect.getsource(module))   # type: ignore[arg-type]
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            value = node.value
            if isinstance(value, ast.Subscript) and getattr(value.value, "id", "") == "Literal":
                elements = value.slice.elts if isinstance(value.slice, ast.Tuple) \
                    else [value.slice]
                return tuple(e.value for e in elements if isinstance(e, ast.Constant))
    raise AssertionError(f"no Literal assigned to {name}")


def test_the_resource_kinds_are_the_literal_the_type_checker_sees():
    assert topology.KINDS == _literal_in_type_checking(topology, "ResourceKind")
