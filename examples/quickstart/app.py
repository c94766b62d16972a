"""A tiny order service. It has never heard of resil: it just uses "orders-db" and "cache".

Run it plainly and "orders-db" does not resolve; run it as ``resil-run python app.py``
and both names land on the current primaries of the resources in ``resil.toml``.
"""

import sys

import pymysql
import redis

item = sys.argv[1] if len(sys.argv) > 1 else "teapot"
db = pymysql.connect(host="orders-db", user="app", password="apppw", database="app",
                     autocommit=True, connect_timeout=5)
cache = redis.Redis(host="cache", socket_connect_timeout=5)

with db.cursor() as cur:
    cur.execute("CREATE TABLE IF NOT EXISTS orders ("
                " id INT AUTO_INCREMENT PRIMARY KEY, item VARCHAR(64), server_id INT)")
    cur.execute("INSERT INTO orders (item, server_id) VALUES (%s, @@server_id)", (item,))
    cur.execute("SELECT @@server_id, COUNT(*) FROM orders")
    server_id, orders = cur.fetchone()
placed = cache.incr("orders:placed")
redis_port = cache.config_get("port")["port"]
print(f"order {item!r} written to MySQL server_id={server_id} ({orders} orders in total); "
      f"counter {placed} on Redis port {redis_port}")
