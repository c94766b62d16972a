"""Targets with wrapt's wrapper signature are patched without importing wrapt.

``Target`` wrappers of the form ``(wrapped, instance, args, kwargs)`` get what a wrapt
``FunctionWrapper`` would give them, through a plain replacement for plain functions and
methods; wrapt (which imports asyncio) is imported only for other attributes.
"""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import textwrap
import types

import wrapt

from resil.integrations.base import Integration, Target


def _record(calls):
    def wrapper(wrapped, instance, args, kwargs):
        calls.append((wrapped, instance, args, kwargs))
        return ("wrapped", wrapped(*args, **kwargs))
    return wrapper


def _module(name):
    module = types.ModuleType(name)
    exec(textwrap.dedent("""
        class Base:
            def greet(self, who, punctuation="!"):
                return f"{self.name} greets {who}{punctuation}"

            async def fetch(self, key):
                return (self.name, key)

            @classmethod
            def make(cls, name):
                obj = cls()
                obj.name = name
                return obj

        class Child(Base):
            name = "child"

        def helper(x, *, y=1):
            return x + y
    """), module.__dict__)
    sys.modules[name] = module
    return module


def _integration(module_name, *targets):
    cls = type("Probe", (Integration,), {
        "name": "probe", "distribution": "no-such-distribution-for-resil",
        "supported": ((0,), (99,)), "targets": targets})
    return cls()


def test_methods_and_functions_get_what_wrapt_would_give(monkeypatch):
    module = _module("resil_probe_plain")
    calls = []
    wrapper = _record(calls)
    probe = _integration(module.__name__,
                         Target(module.__name__, "Child.greet", wrapper),
                         Target(module.__name__, "helper", wrapper))
    original_greet = module.Base.__dict__["greet"]
    probe.instrument()
    try:
        child = module.Child()
        assert child.greet("ann", punctuation="?") == ("wrapped", "child greets ann?")
        wrapped, instance, args, kwargs = calls[-1]
        assert instance is child and args == ("ann",) and kwargs == {"punctuation": "?"}
        assert wrapped.__self__ is child and wrapped.__func__ is original_greet
        # Called through the class, the first argument is still the instance.
        assert module.Child.greet(child, "bob") == ("wrapped", "child greets bob!")
        assert calls[-1][1] is child and calls[-1][2] == ("bob",)
        # A module's function: no instance.
        assert module.helper(1, y=2) == ("wrapped", 3)
        assert calls[-1][1] is None and calls[-1][2] == (1,) and calls[-1][3] == {"y": 2}
        # What introspection sees is the original's.
        assert module.Child.greet.__name__ == "greet"
        assert module.Child.greet.__wrapped__ is original_greet
        assert inspect.signature(module.helper) == inspect.signature(module.helper.__wrapped__)
        assert not isinstance(module.Child.__dict__["greet"], wrapt.ObjectProxy)
    finally:
        probe.uninstrument()
    # Restored: the subclass now holds the base's very function, as before any patch
    # it resolved to.
    assert module.Child.greet is original_greet
    assert module.helper(1) == 2


def test_a_coroutine_method_stays_a_coroutine_function():
    module = _module("resil_probe_async")
    seen = []

    def wrapper(wrapped, instance, args, kwargs):
        seen.append(instance)
        return wrapped(*args, **kwargs)     # a coroutine, awaited by the replacement
    probe = _integration(module.__name__, Target(module.__name__, "Child.fetch", wrapper))
    probe.instrument()
    try:
        assert inspect.iscoroutinefunction(module.Child.fetch)
        child = module.Child()
        assert asyncio.run(child.fetch("k")) == ("child", "k")
        assert seen == [child]
    finally:
        probe.uninstrument()


def test_other_attributes_fall_back_to_wrapt():
    module = _module("resil_probe_classmethod")
    calls = []
    probe = _integration(module.__name__, Target(module.__name__, "Child.make", _record(calls)))
    probe.instrument()
    try:
        assert isinstance(module.Child.__dict__["make"], wrapt.FunctionWrapper)
        tag, made = module.Child.make("x")
        assert tag == "wrapped" and made.name == "x" and calls[-1][1] is module.Child
    finally:
        probe.uninstrument()
    assert isinstance(module.Child.__dict__.get("make", module.Base.__dict__["make"]),
                      classmethod)


def test_patching_the_drivers_imports_neither_wrapt_nor_asyncio(write_config):
    """An application that imports PyMySQL, requests and httpx under the agent pays for
    neither wrapt nor asyncio (wrapt imports asyncio), and its drivers are patched."""
    config = write_config("""
        unit = "a"
        [resources.db]
        kind = "mysql"
        endpoints = { a = "127.0.0.1:3306" }
    """)
    script = textwrap.dedent(f"""
        import sys
        import resil
        resil.start({str(config)!r})
        import pymysql, requests, httpx
        from pymysql.connections import Connection
        assert hasattr(Connection.commit, "__wrapped__"), "commit is not patched"
        assert hasattr(Connection.select_db, "__wrapped__"), "select_db is not patched"
        print(sorted(m for m in ("wrapt", "asyncio") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
