"""The layers point one way: every import of every module under src/resil is read
(function-level and ``TYPE_CHECKING`` ones too, since they record real knowledge) and
checked against the rules of docs/architecture.md.

The rules live in :func:`violations`, which takes an import graph, so the tests below
also prove that each rule fires on a wrong arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "resil"

#: Packages above or beside the core: the core imports none of them.
OUTSIDE_CORE = ("integrations", "serving", "contrib", "telemetry", "control", "ops", "cli",
                "bootstrap")
#: Who may import resil.agent: the package face, the bootstrap and the drill wiring.
MAY_IMPORT_AGENT = ("resil", "resil.bootstrap", "resil.bootstrap.sitecustomize",
                    "resil.ops.drill")


def module_names() -> dict[str, Path]:
    """Every module of the package: dotted name → file."""
    found = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _target(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """Module → the resil modules it imports, anywhere in its body."""
    modules = module_names()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                target = _target(name, path.name == "__init__.py", node)
                for alias in node.names:
                    candidate = f"{target}.{alias.name}"
                    edges.add(candidate if candidate in modules else target)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def _in(module: str, package: str) -> bool:
    return module == f"resil.{package}" or module.startswith(f"resil.{package}.")


def is_core(module: str) -> bool:
    """Top-level modules of resil, but the package face, the agent and the packages."""
    return module.count(".") == 1 and module != "resil.agent" \
        and module.split(".")[1] not in OUTSIDE_CORE


def is_library_integration(module: str) -> bool:
    """``resil.integrations.<library>``: not the package, ``base`` or a ``_helper``."""
    if not module.startswith("resil.integrations.") or module.count(".") != 2:
        return False
    leaf = module.rsplit(".", 1)[1]
    return leaf != "base" and not leaf.startswith("_")


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every arrow that breaks a rule, as ``"importer -> imported: rule"``."""
    found = []
    for importer, imported in sorted(graph.items()):
        for target in sorted(imported):
            rule = _broken(importer, target)
            if rule:
                found.append(f"{importer} -> {target}: {rule}")
    found.extend(f"import cycle: {' -> '.join(c)}" for c in cycles(graph))
    return found


def _broken(importer: str, target: str) -> str | None:
    if target == "resil.agent" and importer not in MAY_IMPORT_AGENT:
        return "only the package face, bootstrap/ and ops/drill import the agent"
    if is_core(importer) and (target == "resil" or target == "resil.agent" or any(
            _in(target, p) for p in OUTSIDE_CORE)):
        return "the core imports no integration, serving, contrib, view, backend, ops or cli"
    if is_library_integration(importer) and is_library_integration(target):
        return "no library integration imports another"
    if _in(importer, "serving") and _in(target, "integrations"):
        return "serving/ never imports integrations/"
    if (_in(importer, "integrations") or _in(importer, "serving")) and any(
            _in(target, p) for p in ("telemetry", "ops", "cli", "control")):
        return "integrations/ and serving/ see only the core (and contrib/)"
    if _in(importer, "telemetry") and any(
            _in(target, p) for p in ("integrations", "serving", "contrib", "ops", "cli")):
        return "the telemetry views read the runtime face and the core only"
    if _in(importer, "control") and any(
            _in(target, p) for p in ("integrations", "serving", "contrib", "telemetry", "ops",
                                     "cli")):
        return "control-plane backends know only the core"
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_forbidden_import_and_no_cycle():
    graph = import_graph()
    assert len(graph) > 60 and "resil.gate" in graph and "resil.serving.wsgi" in graph
    assert violations(graph) == []


def test_function_level_and_type_checking_imports_are_read():
    graph = import_graph()
    assert "resil.agent" in graph["resil"]                 # inside start()
    assert "resil.runtime" in graph["resil.registry"]      # under TYPE_CHECKING


@pytest.mark.parametrize(("importer", "target", "rule"), [
    ("resil.integrations.pymysql", "resil.agent", "import the agent"),
    ("resil.cli.main", "resil.agent", "import the agent"),
    ("resil.gate", "resil.integrations.pymysql", "the core imports no"),
    ("resil.registry", "resil.telemetry.metrics", "the core imports no"),
    ("resil.router", "resil.control.base", "the core imports no"),
    ("resil.sessions", "resil.contrib.flask", "the core imports no"),
    ("resil.state", "resil.ops.switch", "the core imports no"),
    ("resil.integrations.redis", "resil.integrations.pymysql", "no library integration"),
    ("resil.serving.wsgi", "resil.integrations.base", "serving/ never imports"),
    ("resil.integrations.httpx", "resil.telemetry.otel", "see only the core"),
    ("resil.telemetry.admin", "resil.serving.drain", "the telemetry views"),
    ("resil.control.redis", "resil.telemetry.metrics", "control-plane backends"),
])
def test_each_rule_catches_a_wrong_arrow(importer, target, rule):
    graph = {k: set(v) for k, v in import_graph().items()}
    graph[importer].add(target)
    found = violations(graph)
    assert any(v.startswith(f"{importer} -> {target}: ") and rule in v for v in found), found


def test_a_cycle_is_caught():
    graph = {k: set(v) for k, v in import_graph().items()}
    graph["resil.state"].add("resil.gate")      # gate -> state already: a circle
    assert any(v.startswith("import cycle:") and "resil.gate" in v and "resil.state" in v
               for v in violations(graph))


def test_allowed_arrows_pass():
    assert _broken("resil.integrations.flask", "resil.contrib.flask") is None
    assert _broken("resil.integrations.pymysql", "resil.integrations._tracking") is None
    assert _broken("resil.ops.drill", "resil.agent") is None
    assert _broken("resil.agent", "resil.telemetry.admin") is None
