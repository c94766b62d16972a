"""asyncmy: the aiomysql integration's protocol (:mod:`resil.integrations._mysql_async`)
on asyncmy's seams, which have the same shape.

asyncmy's ``Connection`` is compiled with Cython, but as an ordinary class: its methods
can be wrapped like aiomysql's. It keeps its address in ``_host``/``_port`` as aiomysql
does; the differences are the connect (the public ``connect``, where aiomysql has
``_connect``), its timeout attribute (``_connect_timeout``), and that ``close()`` does
not clear its "connected" flag (a move clears it, or ``connect()`` would do nothing).
"""

from __future__ import annotations

from ._mysql_async import AsyncMySQLIntegration, seams


class AsyncmyIntegration(AsyncMySQLIntegration):
    """Routing and hot switching for asyncmy (and SQLAlchemy's async engine over it,
    ``mysql+asyncmy://``)."""

    name = "asyncmy"
    distribution = "asyncmy"
    supported = ((0, 2), (1,))
    targets = seams("asyncmy.connection", "connect")
