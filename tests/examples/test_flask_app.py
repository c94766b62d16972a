"""examples/flask_app, the storefront, run as it is under `resil-run python app.py`.

Two instances (units a and b, one resil.toml each over one file control plane; a runs
`python app.py`, b `gunicorn -w 2 app:app`), their
sessions in a real Redis pair, a fake product service per unit (fake_products.py: the
API of examples/django_app, with a shared order log and Idempotency-Keys). One
`requests.Session` is the shopper: one cookie jar, no stickiness.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import requests

from resil.sessions import KEY_PREFIX, unsign
from servers.config import resil_toml
from servers.ports import free_port, wait_until
from servers.redis import RedisPair

BIN = Path(sys.executable).parent
SECRET = "test-storefront-secret"
EXAMPLE = Path(__file__).parents[2] / "examples" / "flask_app"
FAKE = Path(__file__).with_name("fake_products.py")
UNITS = ("a", "b")
#: How each unit's storefront is run: both ways the README shows.
COMMANDS = {"a": lambda port: ["python", "app.py"],
            "b": lambda port: ["gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "app:app"]}


@dataclass
class Process:
    """One process started by this module, stopped by its PID (its process group)."""

    argv: list[str]
    env: dict[str, str] | None = None
    cwd: Path | None = None
    log: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        if self.running:
            return
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL   # noqa: SIM115
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        if self.log:
            out.close()                                                   # type: ignore[union-attr]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash."""
        if self.running:
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, so that gunicorn reaps its workers; SIGKILL after 10 s."""
        if self.running:
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Shop:
    storefronts: dict[str, str]           # unit -> base URL
    fakes: dict[str, Process]
    fake_ports: dict[str, int]
    orders: Path
    fault: Path
    redis: RedisPair

    def placed(self, key: str | None = None) -> list[dict]:
        """The orders the fake product services placed (with this Idempotency-Key)."""
        if not self.orders.exists():
            return []
        lines = [json.loads(line) for line in self.orders.read_text().splitlines() if line]
        return [o for o in lines if key is None or o["key"] == key]


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def start_fake(fake: Process, port: int) -> None:
    fake.start()
    if not wait_until(lambda: accepts(port), 10):
        fake.kill()
        raise RuntimeError(f"fake product service on port {port} did not start")


@pytest.fixture(scope="module")
def shop(redis_pair: RedisPair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    folder = tmp_path_factory.mktemp("storefront")
    orders, fault, state = folder / "orders.jsonl", folder / "fault", folder / "state.json"
    fake_ports = {u: free_port() for u in UNITS}
    fakes = {u: Process([sys.executable, str(FAKE), u, str(p), str(orders), str(fault)])
             for u, p in fake_ports.items()}
    endpoints = ", ".join(f'{u} = ["http://127.0.0.1:{p}"]' for u, p in fake_ports.items())
    base = (resil_toml(state.as_uri(), redis=redis_pair)
            + '\n[sessions]\nresource = "cache"\n'
            + f'\n[resources.productservice]\nkind = "http"\nendpoints = {{ {endpoints} }}\n')
    ports = {u: free_port() for u in UNITS}
    storefronts = {}
    for unit, port in ports.items():
        config = folder / f"{unit}.toml"
        config.write_text(base.replace('unit = "a"', f'unit = "{unit}"', 1))
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
               "APP_UNIT": unit, "PORT": str(port), "SECRET_KEY": SECRET}
        env.pop("PRODUCT_SERVICE", None)        # the app's default: http://productservice
        storefronts[unit] = Process(
            [str(BIN / "resil-run"), "--config", str(config), *COMMANDS[unit](port)],
            env=env, cwd=EXAMPLE, log=folder / f"storefront-{unit}.log")
    started = [*fakes.values(), *storefronts.values()]
    try:
        for unit, fake in fakes.items():
            start_fake(fake, fake_ports[unit])
        for unit, storefront in storefronts.items():
            storefront.start()
            if not wait_until(lambda p=ports[unit]: accepts(p), 30):
                raise AssertionError(
                    f"storefront {unit} did not start:\n{storefront.log.read_text()}")  # type: ignore[union-attr]
        yield Shop({u: f"http://127.0.0.1:{p}" for u, p in ports.items()}, fakes, fake_ports,
                   orders, fault, redis_pair)
    finally:
        for process in started:
            process.stop()


@pytest.fixture
def store(shop: Shop) -> Shop:
    """Every test starts with both product services up and no fault."""
    shop.fault.unlink(missing_ok=True)
    for unit, fake in shop.fakes.items():
        start_fake(fake, shop.fake_ports[unit])
    return shop


@pytest.fixture
def shopper() -> Iterator[requests.Session]:
    """One browser: one cookie jar for both instances (cookies ignore the port)."""
    with requests.Session() as session:
        yield session


def test_both_instances_list_the_products_and_answer_healthz(store, shopper):
    for unit, url in store.storefronts.items():
        answer = shopper.get(f"{url}/", timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["unit"] == unit
        assert [p["name"] for p in answer.json()["products"]] == [
            "teapot", "kettle", "sold-out mug"]
        assert shopper.get(f"{url}/healthz", timeout=10).json() == {"status": "ok",
                                                                    "unit": unit}
    page = shopper.get(store.storefronts["a"], headers={"Accept": "text/html"}, timeout=10)
    assert page.headers["Content-Type"].startswith("text/html") and "teapot" in page.text


def test_a_cart_follows_the_shopper_and_the_order_stays_in_the_unit(store, shopper):
    a, b = store.storefronts["a"], store.storefronts["b"]
    assert shopper.post(f"{a}/cart/1", json={"qty": 2}, timeout=10).status_code == 200
    assert shopper.post(f"{b}/cart/2", timeout=10).json() == {
        "items": [{"product_id": 1, "qty": 2}, {"product_id": 2, "qty": 1}], "unit": "b"}
    assert shopper.post(f"{a}/cart/2", data={"qty": "3"}, timeout=10).status_code == 200
    assert shopper.get(f"{b}/cart", timeout=10).json()["items"] == [
        {"product_id": 1, "qty": 2}, {"product_id": 2, "qty": 4}]
    sid = unsign(shopper.cookies["session"], [SECRET])
    assert sid is not None, "the cookie is a session id, not Flask's cookie session"
    stored = redis.Redis(port=store.redis.primary.port).hget(KEY_PREFIX + sid, "d:cart")
    assert json.loads(stored) == {"1": 2, "2": 4}

    before = len(store.placed())
    answer = shopper.post(f"{a}/checkout", json={"customer": "ada"}, timeout=10)
    assert answer.status_code == 201, answer.text
    order = answer.json()
    assert order["unit"] == "a" and order["order"]["unit"] == "a"
    assert order["order"]["total_cents"] == 2 * 2500 + 4 * 4000
    new = store.placed()[before:]
    assert len(new) == 1 and new[0]["key"], "one order, with an Idempotency-Key"
    assert new[0]["unit"] == new[0]["caller_unit"] == "a"
    assert new[0]["customer"] == "ada" and new[0]["items"] == [[1, 2], [2, 4]]
    assert shopper.get(f"{b}/cart", timeout=10).json()["items"] == []

    shopper.post(f"{a}/cart/1", timeout=10)            # the next order, from unit b
    answer = shopper.post(f"{b}/checkout", timeout=10)
    assert answer.status_code == 201 and answer.json()["order"]["unit"] == "b"
    assert [o["unit"] for o in store.placed()[before:]] == ["a", "b"]


def test_a_checkout_retried_after_a_lost_answer_orders_once(store, shopper):
    a, b = store.storefronts["a"], store.storefronts["b"]
    shopper.post(f"{a}/cart/2", timeout=10)
    store.fault.touch()                 # the order is placed, its answer is a 500
    before = len(store.placed())
    answer = shopper.post(f"{a}/checkout", timeout=10)
    assert answer.status_code == 502, answer.text
    assert answer.json()["error"] == "bad_gateway"
    placed = store.placed()[before:]
    assert len(placed) == 1
    assert shopper.get(f"{b}/cart", timeout=10).json()["items"] == [
        {"product_id": 2, "qty": 1}], "a failed checkout keeps the cart"

    store.fault.unlink()
    answer = shopper.post(f"{b}/checkout", timeout=10)    # the shopper tries again, elsewhere
    assert answer.status_code == 200, answer.text         # the first order, not a new one
    assert answer.json()["order"]["order_id"] == placed[0]["order_id"]
    assert store.placed()[before:] == placed
    assert shopper.get(f"{a}/cart", timeout=10).json()["items"] == []


def test_out_of_stock_is_a_409_and_keeps_the_cart(store, shopper):
    a, b = store.storefronts["a"], store.storefronts["b"]
    shopper.post(f"{a}/cart/1", timeout=10)
    shopper.post(f"{a}/cart/3", timeout=10)
    before = len(store.placed())
    answer = shopper.post(f"{b}/checkout", timeout=10)
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"] == "out_of_stock"
    assert len(store.placed()) == before
    assert len(shopper.get(f"{a}/cart", timeout=10).json()["items"]) == 2
    assert shopper.delete(f"{b}/cart/3", timeout=10).json()["items"] == [
        {"product_id": 1, "qty": 1}]
    assert shopper.post(f"{a}/checkout", timeout=10).status_code == 201
    assert len(store.placed()) == before + 1


def test_bad_input_is_a_400(store, shopper):
    a = store.storefronts["a"]
    assert shopper.post(f"{a}/checkout", timeout=10).status_code == 400     # empty cart
    assert shopper.post(f"{a}/cart/1", json={"qty": 0}, timeout=10).status_code == 400
    assert shopper.post(f"{a}/cart/1", json=["x"], timeout=10).status_code == 200
    assert shopper.post(f"{a}/cart/99", timeout=10).status_code == 200      # unknown product
    answer = shopper.post(f"{a}/checkout", timeout=10)
    assert answer.status_code == 400 and answer.json()["error"] == "bad_request"


def test_with_the_own_units_product_service_down_the_checkout_goes_to_the_other(
        store, shopper):
    a, b = store.storefronts["a"], store.storefronts["b"]
    shopper.post(f"{b}/cart/1", json={"qty": 5}, timeout=10)
    store.fakes["a"].kill()
    before = len(store.placed())
    answer = shopper.post(f"{a}/checkout", timeout=10)
    assert answer.status_code == 201, answer.text
    assert answer.json()["unit"] == "a" and answer.json()["order"]["unit"] == "b"
    new = store.placed()[before:]
    assert len(new) == 1 and new[0]["key"] and new[0]["caller_unit"] == "a"
    assert shopper.get(f"{a}/", timeout=10).status_code == 200


def test_with_the_product_service_down_everywhere_the_answer_is_a_502(store, shopper):
    b = store.storefronts["b"]
    shopper.post(f"{b}/cart/1", timeout=10)
    for fake in store.fakes.values():
        fake.kill()
    for answer in (shopper.get(f"{b}/", timeout=10), shopper.post(f"{b}/checkout", timeout=10)):
        assert answer.status_code == 502, answer.text
        assert answer.json()["error"] == "bad_gateway"
    assert shopper.get(f"{b}/cart", timeout=10).json()["items"] == [{"product_id": 1, "qty": 1}]
