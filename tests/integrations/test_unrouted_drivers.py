"""A MySQL driver resil does not route (mysql-connector-python) is not silently left
alone: importing it logs what that means, once; the routed ones (mysqlclient, asyncmy,
PyMySQL posing as MySQLdb) are not warned about."""

from __future__ import annotations

import importlib
import logging
import sys

import pytest

import resil

CONFIG = """
unit = "a"
[admin]
listen = "off"
[resources.db]
kind = "mysql"
primary = "a"
endpoints = { a = "127.0.0.1:3306", b = "127.0.0.1:3307" }
"""


@pytest.fixture
def fake_driver(tmp_path, monkeypatch):
    """A module named like an unrouted driver, importable from a temporary folder."""
    def make(name: str) -> None:
        package, _, module = name.rpartition(".")
        folder = tmp_path / package.replace(".", "/") if package else tmp_path
        folder.mkdir(parents=True, exist_ok=True)
        if package:
            (folder / "__init__.py").write_text("")
        (folder / f"{module}.py").write_text("VERSION = 'fake'\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        for loaded in (name, package):
            monkeypatch.delitem(sys.modules, loaded, raising=False)
    yield make


@pytest.mark.parametrize("name,shown", [("mysql.connector", "mysql-connector-python")])
def test_importing_an_unrouted_mysql_driver_is_said(write_config, fake_driver, caplog,
                                                    name, shown):
    fake_driver(name)
    resil.start(write_config(CONFIG))
    with caplog.at_level(logging.WARNING, logger="resil"):
        __import__(name)
    warned = [r.getMessage() for r in caplog.records if "does not route" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith(f"resil: {shown}")
    assert "PyMySQL, aiomysql, asyncmy and mysqlclient are routed" in warned[0]
    sys.modules.pop(name, None)


def test_pymysql_as_mysqldb_is_routed_and_not_warned_about(write_config, caplog,
                                                           monkeypatch):
    import pymysql
    monkeypatch.delitem(sys.modules, "MySQLdb", raising=False)
    resil.start(write_config(CONFIG))
    with caplog.at_level(logging.WARNING, logger="resil"):
        pymysql.install_as_MySQLdb()
        import MySQLdb  # noqa: F401
    assert "does not route" not in caplog.text
    sys.modules.pop("MySQLdb", None)


def test_mysqlclient_is_routed_and_not_warned_about(write_config, caplog, monkeypatch):
    for name in [m for m in sys.modules if m == "MySQLdb" or m.startswith("MySQLdb.")]:
        monkeypatch.delitem(sys.modules, name)
    agent = resil.start(write_config(CONFIG))
    with caplog.at_level(logging.WARNING, logger="resil"):
        import MySQLdb  # noqa: F401
    assert "does not route" not in caplog.text
    assert "mysqlclient" in {i.name for i in agent.integrations}


def test_no_warning_without_a_mysql_resource(write_config, fake_driver, caplog):
    fake_driver("mysql.connector")
    resil.start(write_config(CONFIG.replace('kind = "mysql"', 'kind = "redis"')))
    with caplog.at_level(logging.WARNING, logger="resil"):
        __import__("mysql.connector")
    assert "does not route" not in caplog.text
    sys.modules.pop("mysql.connector", None)


def test_a_fault_of_the_warning_never_breaks_the_import(write_config, fake_driver,
                                                        monkeypatch):
    import resil.agent
    fake_driver("mysql.connector")
    resil.start(write_config(CONFIG))

    def broken(module):
        raise RuntimeError("injected fault")
    monkeypatch.setattr(resil.agent, "_warn_unrouted", broken)
    module = importlib.import_module("mysql.connector")     # imported all the same
    assert module.VERSION == "fake"
    from resil import counters
    assert counters.faults() == {"agent.unrouted_driver": 1}
    sys.modules.pop("mysql.connector", None)
