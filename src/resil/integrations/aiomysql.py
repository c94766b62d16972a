"""aiomysql: routing and hot switching (:mod:`resil.integrations._mysql_async`, on
aiomysql's own seams: ``aiomysql.connection.Connection``)."""

from __future__ import annotations

from ._mysql_async import AsyncMySQLIntegration, seams


class AiomysqlIntegration(AsyncMySQLIntegration):
    """Routing and hot switching for aiomysql (and SQLAlchemy's async engine over it)."""

    name = "aiomysql"
    distribution = "aiomysql"
    supported = ((0, 1), (1,))
    targets = seams("aiomysql.connection", "_connect")
