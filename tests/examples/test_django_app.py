"""examples/django_app, the product service: an unchanged Django project on a real MariaDB
pair, run as `resil-run python manage.py runserver` and `resil-run gunicorn`.

The project reaches its database as "orders-db" only, a name that exists in resil.toml
and nowhere else. Its API (products, orders with idempotency keys and stock, health) is
checked end to end; then orders keep being placed while the primary is switched to unit
b and back: no 5xx, and every order answered 201 is on the primary afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from servers.config import PASSWORDS, resil_toml
from servers.mariadb import MariaDBPair
from servers.ports import free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "django_app"
BIN = Path(sys.executable).parent
PRODUCTS = 8                # what `manage.py seed` creates by default
GUNICORN = ("gunicorn", "productservice.wsgi", "-w", "2", "--threads", "4")


@dataclass
class Service:
    """One running instance of the example."""

    url: str
    log: Path
    config: Path
    database: str
    pair: MariaDBPair
    pid: int = 0

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=10)

    def order(self, items: list[dict], key: str | None = None, customer: str = "ada",
              session: requests.Session | None = None) -> requests.Response:
        headers = {"Idempotency-Key": key} if key else {}
        return (session or requests).post(
            f"{self.url}/orders", json={"customer": customer, "items": items},
            headers=headers, timeout=10)

    def rows(self, query: str) -> list[tuple]:
        """Run ``query`` on unit a's server (the primary), in the test's database."""
        return self.pair.primary.root_sql(f"USE `{self.database}`; {query}")


def app_env(database: str) -> dict[str, str]:
    """The project's own environment variables: nothing of resil among them."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "PYTHONDONTWRITEBYTECODE": "1", "APP_UNIT": "a", "DB_HOST": "orders-db",
            "DB_NAME": database, "DB_USER": "app", "DB_PASSWORD": "apppw"}


def manage(config: Path, database: str, *args: str) -> str:
    """`resil-run python manage.py ARGS` in the example's folder; returns its output."""
    out = subprocess.run([str(BIN / "resil-run"), "--config", str(config), sys.executable,
                          "manage.py", *args], cwd=EXAMPLE, env=app_env(database),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def start(command: list[str], port: int, log: Path, env: dict[str, str]
          ) -> subprocess.Popen[bytes]:
    """Start the project; return once it answers /healthz (with any status)."""
    with log.open("wb") as out:     # a file, not a pipe: a full pipe would block the server
        proc = subprocess.Popen(command, cwd=EXAMPLE, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            return proc
        except requests.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop(proc)
                raise AssertionError(log.read_text()[-3000:]) from None
            time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the process we started and its children (gunicorn's workers): its group."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def serve(config: Path, pair: MariaDBPair, database: str, log: Path,
          server: tuple[str, ...] = ("runserver",), stock: int = 100,
          env: dict[str, str] | None = None) -> Iterator[Service]:
    """migrate, seed and serve the example under resil-run, all three as a user would
    (``env``: more of the project's own settings, for the server)."""
    assert "Applying shop.0001_initial" in manage(config, database, "migrate", "--noinput")
    manage(config, database, "seed", "--stock", str(stock))
    port = free_port()
    if server == ("runserver",):
        command = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    else:
        command = [*server, "-b", f"127.0.0.1:{port}"]
    proc = start([str(BIN / "resil-run"), "--config", str(config), *command], port, log,
                 {**app_env(database), **(env or {})})
    try:
        yield Service(f"http://127.0.0.1:{port}", log, config, database, pair, proc.pid)
    finally:
        stop(proc)


def workers(pid: int) -> list[int]:
    """The child processes of ``pid`` (gunicorn's workers), at least one."""
    found = [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
             for c in (t / "children").read_text().split()]
    assert found, f"no worker under {pid}"
    return found


def mapped(pid: int, fragment: str) -> bool:
    """Whether process ``pid`` has a file whose path contains ``fragment`` mapped."""
    return fragment in Path(f"/proc/{pid}/maps").read_text()


def switch(config: Path, to: str) -> str:
    out = subprocess.run([str(BIN / "resil"), "db", "switch", "orders-db", "--to", to,
                          "--config", str(config)], capture_output=True, text=True,
                         timeout=60, env={**os.environ, **PASSWORDS})
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def primary_unit(pair: MariaDBPair) -> str:
    return "a" if pair.primary.root_sql("SELECT @@read_only") == [(0,)] else "b"


@pytest.fixture
def config(write_config, mariadb_pair, tmp_path) -> Path:
    return write_config(resil_toml((tmp_path / "state.json").as_uri(), mysql=mariadb_pair))


@pytest.fixture
def service(config, mariadb_pair, mysql_db, tmp_path) -> Iterator[Service]:
    with serve(config, mariadb_pair, mysql_db, tmp_path / "runserver.log") as service:
        yield service


def test_products_orders_idempotency_and_errors(service):
    products = service.get("/products").json()
    assert products["unit"] == "a" and len(products["products"]) == PRODUCTS
    assert {p["stock"] for p in products["products"]} == {100}
    teapot, kettle = products["products"][:2]
    assert service.get(f"/products/{teapot['id']}").json() == {**teapot, "unit": "a"}
    missing = service.get("/products/999999")
    assert missing.status_code == 404 and missing.json() == {"error": "no product 999999"}
    assert service.get("/no/such/page").json() == {"error": "not found"}

    # An order: 201, stock taken, lines priced.
    placed = service.order([{"product_id": teapot["id"], "qty": 2},
                            {"product_id": kettle["id"], "qty": 1}])
    assert placed.status_code == 201, placed.text
    total = 2 * teapot["price_cents"] + kettle["price_cents"]
    assert placed.json() == {"order_id": placed.json()["order_id"], "total_cents": total,
                             "unit": "a"}
    assert service.get(f"/products/{teapot['id']}").json()["stock"] == 98
    order = service.get(f"/orders/{placed.json()['order_id']}").json()
    assert order["customer"] == "ada" and order["total_cents"] == total
    assert [(line["product_id"], line["qty"]) for line in order["lines"]] == \
        [(teapot["id"], 2), (kettle["id"], 1)]
    assert service.get("/orders/999999").status_code == 404

    # The same Idempotency-Key twice, then eight times at once: one order each time.
    first = service.order([{"product_id": kettle["id"], "qty": 1}], key="retry-1")
    again = service.order([{"product_id": kettle["id"], "qty": 1}], key="retry-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    racing: list[requests.Response] = []
    threads = [threading.Thread(target=lambda: racing.append(service.order(
        [{"product_id": kettle["id"], "qty": 1}], key="race-1"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in racing) == [200] * 7 + [201], [r.text for r in racing]
    assert len({r.json()["order_id"] for r in racing}) == 1
    assert service.get(f"/products/{kettle['id']}").json()["stock"] == 100 - 3
    assert service.rows("SELECT COUNT(*) FROM shop_order") == [(3,)]

    # Out of stock: 409, nothing taken.
    short = service.order([{"product_id": teapot["id"], "qty": 1},
                           {"product_id": kettle["id"], "qty": 98}])
    assert short.status_code == 409
    assert short.json() == {"error": f"product {kettle['id']} has only 97 in stock",
                            "product_id": kettle["id"], "stock": 97}
    assert service.get(f"/products/{teapot['id']}").json()["stock"] == 98

    # Bad input: 400, with a reason; nothing written.
    bad = requests.post(f"{service.url}/orders", data=b"{not json", timeout=10)
    assert bad.status_code == 400 and bad.json()["error"].startswith("the body is not JSON")
    for body in ([], {"items": [{"product_id": teapot["id"], "qty": 1}]},
                 {"customer": "ada", "items": []},
                 {"customer": "ada", "items": [{"product_id": teapot["id"], "qty": 0}]},
                 {"customer": "ada", "items": [{"product_id": teapot["id"], "qty": 1001}]},
                 {"customer": "ada", "items": [{"product_id": str(teapot["id"]), "qty": 1}]},
                 {"customer": "ada", "items": [{"product_id": 999999, "qty": 1}]}):
        answer = requests.post(f"{service.url}/orders", json=body, timeout=10)
        assert answer.status_code == 400, (body, answer.text)
    too_long = service.order([{"product_id": teapot["id"], "qty": 1}], key="k" * 65)
    assert too_long.status_code == 400
    assert requests.get(f"{service.url}/orders", timeout=10).status_code == 405
    assert service.rows("SELECT COUNT(*) FROM shop_order") == [(3,)]

    health = service.get("/healthz")
    assert health.status_code == 200 and health.json() == {"ok": True, "unit": "a"}
    assert "seed" in manage(service.config, service.database, "help", "seed")
    assert "0 product(s) created, 8 already there" in manage(
        service.config, service.database, "seed")
    log = service.log.read_text()
    assert "Traceback" not in log and '" 500 ' not in log, log[-3000:]


def test_without_resil_orders_db_does_not_resolve(mysql_db, tmp_path):
    """The project holds no resil code: run plainly, "orders-db" means nothing.

    (gunicorn, because runserver refuses to start when it cannot reach the database.)
    """
    port = free_port()
    proc = start([str(BIN / "gunicorn"), "productservice.wsgi", "-b", f"127.0.0.1:{port}"],
                 port, tmp_path / "plain.log", app_env(mysql_db))
    try:
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    finally:
        stop(proc)
    assert health.status_code == 503, health.text
    assert health.json()["ok"] is False and "orders-db" in health.json()["error"]


def order_through_switches(service: Service, ids: list[int]
                           ) -> tuple[list[tuple[int, int, int]], list[str], list[str]]:
    """Four clients order without pause while the primary moves to unit b and back.

    Half of the orders carry an Idempotency-Key. Returns (order_id, product_id, qty) of
    every order answered 201, every other answer or error, and the switches' reports.
    """
    placed: list[tuple[int, int, int]] = []
    failures: list[str] = []
    reports: list[str] = []
    done = threading.Event()

    def client(n: int) -> None:
        session = requests.Session()                # keep-alive, as a real client would
        i = 0
        while not done.is_set():
            product_id, qty = ids[(n + i) % len(ids)], 1 + i % 3
            key = uuid.uuid4().hex if (n + i) % 2 else None
            i += 1
            try:
                answer = service.order([{"product_id": product_id, "qty": qty}], key=key,
                                       customer=f"c{n}", session=session)
            except requests.RequestException as exc:
                failures.append(f"client {n}: {exc!r}")
                continue
            if answer.status_code == 201:
                placed.append((answer.json()["order_id"], product_id, qty))
            else:
                failures.append(f"client {n}: {answer.status_code} {answer.text[:300]}")

    clients = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in clients:
        thread.start()
    try:
        time.sleep(0.5)
        for unit in ("b", "a"):
            before = len(placed)
            reports.append(switch(service.config, unit))
            assert primary_unit(service.pair) == unit
            time.sleep(0.5)
            assert len(placed) > before, f"orders did not resume on unit {unit}"
    finally:
        done.set()
        for thread in clients:
            thread.join(15)
        if primary_unit(service.pair) != "a":       # the pair is shared: put it back
            switch(service.config, "a")
    return placed, failures, reports


@pytest.mark.parametrize("server,env", [
    (("runserver",), {}),
    (GUNICORN, {}),
    # Django's own driver, unchanged: persistent connections (moved), and one per request.
    (GUNICORN, {"DB_DRIVER": "mysqlclient"}),
    (GUNICORN, {"DB_DRIVER": "mysqlclient", "DB_CONN_MAX_AGE": "0"}),
], ids=["runserver", "gunicorn", "gunicorn-mysqlclient", "gunicorn-mysqlclient-per-request"])
def test_orders_keep_flowing_through_a_planned_switch(config, mariadb_pair, mysql_db,
                                                      tmp_path, server, env):
    with serve(config, mariadb_pair, mysql_db, tmp_path / "server.log", server=server,
               stock=100_000, env=env) as service:
        ids = [p["id"] for p in service.get("/products").json()["products"]]
        placed, failures, reports = order_through_switches(service, ids)
        if env.get("DB_DRIVER") == "mysqlclient":     # really mysqlclient's C library
            assert all(mapped(pid, "MySQLdb/_mysql.") for pid in workers(service.pid))
    assert len(placed) > 20

    stored = {order for (order,) in service.rows("SELECT id FROM shop_order")}
    lost = {order for order, _, _ in placed} - stored
    assert not lost, f"{len(lost)} orders answered 201 are not on the primary"
    taken: Counter[int] = Counter()
    for _, product_id, qty in placed:
        taken[product_id] += qty
    stock = dict(service.rows("SELECT id, stock FROM shop_product"))
    assert {pid: 100_000 - stock[pid] for pid in ids if stock[pid] < 100_000} == taken, \
        "stock taken differs from the orders answered 201"
    assert not failures, (failures[:5], service.log.read_text()[-3000:])
    assert len(stored) == len(placed)
    print(f"\n{server[0]} {env}: {len(placed)} orders during two switches\n" + reports[0])


def test_a_persistent_connection_starts_a_transaction_after_a_switch(
        config, mariadb_pair, mysql_db, tmp_path):
    """One sync worker, one persistent connection: idle during the switch, then the next
    request begins with transaction.atomic() (an order without an Idempotency-Key)."""
    with serve(config, mariadb_pair, mysql_db, tmp_path / "one.log",
               server=("gunicorn", "productservice.wsgi", "-w", "1")) as service:
        product = service.get("/products").json()["products"][0]
        try:
            switch(config, "b")
            answer = service.order([{"product_id": product["id"], "qty": 1}])
            after = service.order([{"product_id": product["id"], "qty": 1}])
        finally:
            switch(config, "a")
    assert after.status_code == 201, after.text
    assert answer.status_code == 201, answer.text
