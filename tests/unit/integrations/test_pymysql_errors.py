"""Which PyMySQL errors resil takes for "the connect reached no server"."""

from __future__ import annotations

import importlib.util

import pymysql

from resil.integrations.pymysql import _unreachable


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
        assert _unreachable(errors.OperationalError(2003, "Can't connect"))
        assert _unreachable(errors.OperationalError(2013, "Lost connection"))
        assert not _unreachable(errors.OperationalError(1045, "Access denied"))
        assert not _unreachable(errors.ProgrammingError(2003, "not a connect failure"))
    assert not _unreachable(OSError(2003, "not PyMySQL's"))
