"""The contract every integration keeps, checked for each one resil registers.

``instrument()`` wraps every target and is idempotent; ``uninstrument()`` restores the
very original objects and is idempotent; the disabled list keeps one out; a library
version outside the supported range is a logged skip; a target that cannot be patched is
a counted fault, never an exception, and the other targets are still patched; a library
imported *after* ``instrument()`` is patched on import.
"""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import wrapt

from resil import counters
from resil.integrations import discover
from resil.integrations.base import Integration, Target

NAMES = ("pymysql", "redis", "flask", "django", "requests", "urllib3", "httpx", "urllib",
         "starlette", "aiomysql")


def _integration(name: str) -> type[Integration]:
    found = {type(i).name: type(i) for i in discover()}
    assert set(NAMES) <= set(found), sorted(found)
    return found[name]


def _attributes(integration: Integration | type[Integration]) -> dict[tuple[str, str], Any]:
    """The current object at every target the class declares (imports their modules)."""
    current = {}
    for target in type(integration).targets if isinstance(integration, Integration) \
            else integration.targets:
        module = importlib.import_module(target.module)
        owner, attribute, value = wrapt.resolve_path(module, target.path)
        current[(target.module, target.path)] = owner.__dict__.get(attribute, value)
    return current


@pytest.fixture(params=NAMES)
def integration(request: pytest.FixtureRequest) -> Integration:
    made = _integration(request.param)()
    before = _attributes(made)
    yield made
    made.uninstrument()
    assert _attributes(made) == before, "an integration left a patch behind"


def test_instrument_wraps_every_target_once_and_uninstrument_restores_the_originals(
        integration: Integration) -> None:
    originals = _attributes(integration)
    integration.instrument()
    patched = _attributes(integration)
    assert integration.patched
    assert all(patched[k] is not originals[k] for k in originals), "a target was not wrapped"
    integration.instrument()                              # idempotent: no double wrap
    assert _attributes(integration) == patched
    integration.uninstrument()
    assert _attributes(integration) == originals
    assert not integration.patched
    integration.uninstrument()                            # idempotent
    assert _attributes(integration) == originals


def test_the_disabled_list_keeps_an_integration_out() -> None:
    for name in NAMES:
        names = {i.name for i in discover(frozenset({name}))}
        assert name not in names and set(NAMES) - {name} <= names


def test_a_version_outside_the_supported_range_is_a_logged_skip(
        integration: Integration, caplog: pytest.LogCaptureFixture) -> None:
    if integration.name == "urllib":
        pytest.skip("urllib.request is the standard library: it has no version to gate")
    integration.supported = ((999,), (1000,))       # instance attribute: this object only
    originals = _attributes(integration)
    with caplog.at_level(logging.WARNING, logger="resil.integrations"):
        integration.instrument()
    assert _attributes(integration) == originals and not integration.patched
    assert any("outside the supported range" in r.getMessage() for r in caplog.records)


def test_a_target_that_cannot_be_patched_is_a_counted_fault_and_the_rest_are_patched(
        integration: Integration) -> None:
    good = integration.targets
    broken = Target(good[0].module, "NoSuchClass.no_such_method", good[0].wrapper,
                    good[0].method)
    integration.targets = (broken, *good)           # instance attribute: this object only
    originals = _attributes(integration)
    integration.instrument()                        # must not raise
    patched = _attributes(integration)
    assert all(patched[k] is not originals[k] for k in originals)
    assert counters.faults().get(f"{integration.name}.instrument", 0) >= 1


PATCH_ON_IMPORT = textwrap.dedent("""
    import importlib, sys
    from resil.integrations import discover
    import wrapt
    late = set()
    # aiomysql imports pymysql: looked at last, so that pymysql is still late.
    for integration in sorted(discover(), key=lambda i: i.name == "aiomysql"):
        modules = {t.module for t in integration.targets}
        late |= {integration.name for m in modules if m not in sys.modules}
        integration.instrument()
        for target in integration.targets:
            module = importlib.import_module(target.module)
            owner, attribute, value = wrapt.resolve_path(module, target.path)
            original = owner.__dict__.get(attribute, value)
            assert getattr(original, "__wrapped__", None) is not None, \\
                (integration.name, target.path)
        integration.uninstrument()
    print(" ".join(sorted(late)))
""")


def test_a_library_imported_after_instrument_is_patched_on_import() -> None:
    out = subprocess.run([sys.executable, "-c", PATCH_ON_IMPORT], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    late = set(out.stdout.split())       # those whose modules were not yet imported
    assert {"pymysql", "redis", "flask", "django", "requests", "httpx"} <= late, late


def test_the_agent_loads_an_integration_when_a_module_it_patches_is_imported() -> None:
    """The agent's table of what resil's own integrations watch is their targets' modules
    (a module missing from it would be patched late, or never)."""
    from resil.integrations import WATCHES
    for integration in discover():
        module = type(integration).__module__
        if module.startswith("resil.integrations."):
            assert set(WATCHES[module]) == {t.module for t in integration.targets}, module


LOADED_ON_IMPORT = textwrap.dedent("""
    import sys
    import resil
    agent = resil.start(sys.argv[1])
    before = sorted(m for m in sys.modules if m.startswith("resil.integrations.")
                    and m != "resil.integrations._dists")   # entry points: read at start
    deferred = {i.name: i for i in agent.integrations}
    import pymysql
    after = sorted(m for m in sys.modules if m.startswith("resil.integrations."))
    original = pymysql.connections.Connection.__dict__["connect"]
    print(before)
    print([m for m in after if m not in before])
    print(deferred["pymysql"].patched, deferred["redis"].patched,
          deferred["pymysql"].name, type(deferred["pymysql"].loaded).__name__)
    resil.stop()
    print(pymysql.connections.Connection.__dict__["connect"] is not original)
""")


def test_resils_own_integrations_load_with_their_library(tmp_path) -> None:
    """At start the agent loads none of resil's own integration modules; importing
    PyMySQL loads and instruments that one integration before the import returns; stop
    removes its patch."""
    config = tmp_path / "resil.toml"
    config.write_text(textwrap.dedent(f"""
        unit = "a"
        [control]
        url = "{(tmp_path / 'state.json').as_uri()}"
        [admin]
        listen = "off"
        [resources.db]
        kind = "mysql"
        primary = "a"
        endpoints = {{ a = "127.0.0.1:1", b = "127.0.0.1:2" }}
    """))
    out = subprocess.run([sys.executable, "-c", LOADED_ON_IMPORT, str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    before, loaded, state, restored = out.stdout.splitlines()
    assert before == "[]"
    assert "'resil.integrations.pymysql'" in loaded and "redis'" not in loaded
    assert state == "True False pymysql PyMySQLIntegration"
    assert restored == "True"
