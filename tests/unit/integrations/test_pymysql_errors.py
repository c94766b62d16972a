"""Which PyMySQL errors resil takes for "the connect reached no server"."""

from __future__ import annotations

import importlib.util

import pymysql

from resil.integrations._mysql import unreachable


def test_a_refused_connect_is_recognised_even_from_a_second_copy_of_pymysql_err():
    """Django imports ``MySQLdb.err`` after ``pymysql.install_as_MySQLdb()``: the module
    is loaded again and ``pymysql.err`` then names the copy, whose classes are not the
    ones PyMySQL raises. A refused connect must still be held, not raised (it was: every
    Django request on a dead primary answered 500 instead of waiting for the failover)."""
    spec = importlib.util.spec_from_file_location("pymysql.copy_of_err",
                                                  pymysql.err.__file__)
    assert spec is not None and spec.loader is not None
    copy = importlib.util.module_from_spec(spec)
    copy.__package__ = "pymysql"        # its relative imports, as MySQLdb.err's
    spec.loader.exec_module(copy)
    assert copy.OperationalError is not pymysql.err.OperationalError
    for errors in (pymysql.err, copy):
        assert unreachable(errors.OperationalError(2003, "Can't connect"))
        assert unreachable(errors.OperationalError(2013, "Lost connection"))
        assert not unreachable(errors.OperationalError(1045, "Access denied"))
        assert not unreachable(errors.ProgrammingError(2003, "not a connect failure"))
    assert not unreachable(OSError(2003, "not PyMySQL's"))


def test_mariadb_client_library_connect_failures_are_recognised():
    """mysqlclient is built on MariaDB's client library, which reports a TCP connect that
    reached no server as 2002 (PyMySQL says 2003): held for a failover all the same."""
    import MySQLdb
    assert unreachable(MySQLdb.OperationalError(2002, "Can't connect to server (115)"))
    assert not unreachable(MySQLdb.OperationalError(1045, "Access denied"))
    assert not unreachable(MySQLdb.ProgrammingError(2002, "not a connect failure"))
