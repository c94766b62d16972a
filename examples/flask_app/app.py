"""A tiny storefront: a product list, a cart and a checkout. It has never heard of resil.

It calls the product service at ``http://productservice`` (env ``PRODUCT_SERVICE``) and
keeps the cart in Flask's session. Run it as ``resil-run python app.py`` and that name is
routed to the product service in this unit first (another unit when it is down), and
the session lives in Redis, so any instance in any unit can serve any shopper.
"""

import os
import uuid

import requests
from flask import Flask, jsonify, redirect, render_template_string, request, session, url_for

PRODUCT_SERVICE = os.environ.get("PRODUCT_SERVICE", "http://productservice")
UNIT = os.environ.get("APP_UNIT", "local")  # only to show which instance answered
TIMEOUT = (2, 5)  # seconds to connect, to read; per attempt (a call may be tried 3 times)

app = Flask(__name__)
# DEVELOPMENT DEFAULT ONLY: set SECRET_KEY in every real deployment (the same on every
# instance, or a session cookie from one instance is worthless on another).
app.secret_key = os.environ.get("SECRET_KEY", "dev-only-storefront-secret")


class Upstream(Exception):
    """The product service could not be reached or gave an unexpected answer."""


def product_service(method, path, **kwargs):
    """Call the product service; return its status and JSON body.

    No answer, a 5xx or a body that is not JSON raises :class:`Upstream` (a 502 for the
    shopper, never a 500 with a traceback).
    """
    try:
        answer = requests.request(method, PRODUCT_SERVICE + path, timeout=TIMEOUT, **kwargs)
    except requests.RequestException as exc:
        raise Upstream(f"product service unreachable ({type(exc).__name__})") from exc
    if answer.status_code >= 500:
        raise Upstream(f"product service answered {answer.status_code}")
    try:
        return answer.status_code, answer.json()
    except ValueError as exc:
        raise Upstream(f"product service answered {answer.status_code} without JSON") from exc


@app.errorhandler(Upstream)
def upstream_failed(exc):
    return jsonify(error="bad_gateway", message=str(exc), unit=UNIT), 502


def wants_html():
    """A browser (it asks for HTML first); curl and scripts get JSON."""
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def form():
    """The request's fields, from a JSON object or a form."""
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else request.form


def cart_items():
    return [{"product_id": int(pid), "qty": qty} for pid, qty in session.get("cart", {}).items()]


def set_cart(cart):
    session["cart"] = cart                  # assign, so that the session knows it changed
    session.pop("checkout_key", None)       # a different cart is a new checkout attempt


PAGE = """<!doctype html>
<title>Storefront</title>
<h1>Storefront <small>(unit {{ unit }})</small></h1>
<ul>{% for p in products %}
  <li>{{ p.name }}: {{ "%.2f"|format(p.price_cents / 100) }} ({{ p.stock }} in stock)
    <form method="post" action="{{ url_for('add_to_cart', product_id=p.id) }}"
          style="display:inline"><button>add</button></form></li>
{% endfor %}</ul>
<h2>Cart</h2>
<ul>{% for item in cart %}
  <li>product {{ item.product_id }} &times; {{ item.qty }}
    <form method="post" action="{{ url_for('remove_from_cart', product_id=item.product_id) }}"
          style="display:inline"><button>remove</button></form></li>
{% else %}<li>empty</li>{% endfor %}</ul>
{% if cart %}
<form method="post" action="{{ url_for('checkout') }}"><button>checkout</button></form>
{% endif %}
"""


@app.get("/")
def index():
    status, products = product_service("GET", "/products")
    if status != 200:
        raise Upstream(f"product service answered {status}")
    if wants_html():
        return render_template_string(PAGE, products=products, cart=cart_items(), unit=UNIT)
    return jsonify(products=products, unit=UNIT)


@app.post("/cart/<int:product_id>")
def add_to_cart(product_id):
    try:
        qty = int(form().get("qty", 1))
    except (TypeError, ValueError):
        qty = 0
    if not 1 <= qty <= 99:
        return jsonify(error="bad_request", message="qty must be 1 to 99", unit=UNIT), 400
    cart = session.get("cart", {})          # JSON keys are strings: {"1": 2}
    cart[str(product_id)] = cart.get(str(product_id), 0) + qty
    set_cart(cart)
    return redirect(url_for("index"), 303) if wants_html() else show_cart()


@app.delete("/cart/<int:product_id>")
@app.post("/cart/<int:product_id>/remove")          # HTML forms cannot send DELETE
def remove_from_cart(product_id):
    cart = session.get("cart", {})
    cart.pop(str(product_id), None)
    set_cart(cart)
    return redirect(url_for("index"), 303) if wants_html() else show_cart()


@app.get("/cart")
def show_cart():
    return jsonify(items=cart_items(), unit=UNIT)


@app.post("/checkout")
def checkout():
    items = cart_items()
    if not items:
        return jsonify(error="bad_request", message="the cart is empty", unit=UNIT), 400
    # One key per checkout attempt, kept until the order succeeded: when an answer got
    # lost and the shopper (or anything in between) tries again, the product service
    # sees the same key and returns the first order instead of placing a second one.
    key = session.setdefault("checkout_key", uuid.uuid4().hex)
    customer = form().get("customer", "guest")
    status, order = product_service("POST", "/orders", headers={"Idempotency-Key": key},
                                    json={"customer": customer, "items": items})
    if status in (200, 201):                # 200: the order an earlier try placed
        session.pop("cart", None)
        session.pop("checkout_key", None)
        return jsonify(order=order, unit=UNIT), status
    if status == 409:                       # out of stock: the cart is kept
        return jsonify(error="out_of_stock", upstream=order, unit=UNIT), 409
    if status == 400:
        return jsonify(error="bad_request", upstream=order, unit=UNIT), 400
    raise Upstream(f"product service answered {status}")


@app.get("/healthz")
def healthz():
    return jsonify(status="ok", unit=UNIT)


if __name__ == "__main__":
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "5000")))
