"""Serving: what resil does around the requests an application *receives*.

Request metrics and wrong-unit protection around WSGI and ASGI callables (``wsgi``,
``unitguard``), routing keys (``routekey``), forwarding to another unit (``forward``) and
SIGTERM draining (``drain``). The Flask and Django integrations install these; nothing
here imports an integration.
"""
