"""A fake product service for the storefront tests: ``python fake_products.py UNIT PORT
ORDERS [FAULT]``.

It answers the product service's API (``GET /products``, ``POST /orders``, ``GET
/healthz``). Every instance, whatever its unit, appends the orders it places to the
JSON-lines file ORDERS and looks Idempotency-Keys up there — the shared database of a
real product service — so a repeated key returns the first order with 200 wherever it
arrives. Each line: ``{"order_id", "key", "unit", "port", "caller_unit", "customer",
"items", "total_cents"}``. While the file FAULT exists, an order is placed and recorded
and then answered with a 500, as when an answer gets lost on its way back.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PRODUCTS: list[dict[str, Any]] = [
    {"id": 1, "name": "teapot", "price_cents": 2500, "stock": 1000},
    {"id": 2, "name": "kettle", "price_cents": 4000, "stock": 1000},
    {"id": 3, "name": "sold-out mug", "price_cents": 900, "stock": 0},
]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def do_GET(self) -> None:
        if self.path == "/products":
            self._send(200, PRODUCTS)
        elif self.path == "/healthz":
            self._send(200, {"status": "ok", "unit": self.server.unit})
        else:
            self._send(404, {"error": "not_found"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/orders":
            self._send(404, {"error": "not_found"})
            return
        try:
            order = json.loads(body)
            items = [(int(i["product_id"]), int(i["qty"])) for i in order["items"]]
            customer = str(order["customer"])
        except (ValueError, KeyError, TypeError):
            self._send(400, {"error": "bad_request"})
            return
        products = {p["id"]: p for p in PRODUCTS}
        if not items or any(pid not in products or qty < 1 for pid, qty in items):
            self._send(400, {"error": "bad_request"})
            return
        if any(qty > products[pid]["stock"] for pid, qty in items):
            self._send(409, {"error": "out_of_stock"})
            return
        key = self.headers.get("Idempotency-Key")
        with open(self.server.orders, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)           # one writer at a time, across processes
            f.seek(0)
            placed = [json.loads(line) for line in f if line.strip()]
            first = next((p for p in placed if key and p["key"] == key), None)
            if first is None:
                record = {"order_id": len(placed) + 1, "key": key, "unit": self.server.unit,
                          "port": self.server.server_port,
                          "caller_unit": self.headers.get("x-resil-unit"),
                          "customer": customer, "items": [list(i) for i in items],
                          "total_cents": sum(products[p]["price_cents"] * q for p, q in items)}
                f.write(json.dumps(record) + "\n")
        if first is None and self.server.fault and os.path.exists(self.server.fault):
            self._send(500, {"error": "internal"})
            return
        done = first or record
        self._send(200 if first else 201, {"order_id": done["order_id"],
                                           "total_cents": done["total_cents"],
                                           "unit": done["unit"]})

    def _send(self, status: int, data: object) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, unit: str, port: int, orders: str, fault: str) -> None:
        self.unit, self.orders, self.fault = unit, orders, fault
        super().__init__(("127.0.0.1", port), Handler)


if __name__ == "__main__":
    unit, port, orders = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    fault = sys.argv[4] if len(sys.argv) > 4 else ""
    Server(unit, port, orders, fault).serve_forever()
