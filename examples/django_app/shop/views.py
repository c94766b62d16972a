"""The JSON API: plain Django views, JSON in and out."""

import json
from collections import Counter

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.http import JsonResponse
from django.views.decorators.http import require_GET, require_POST

from .models import Order, OrderLine, Product

MAX_KEY_LENGTH = Order._meta.get_field("idempotency_key").max_length
MAX_CUSTOMER_LENGTH = Order._meta.get_field("customer").max_length
MAX_QTY = 1000


class BadRequest(ValueError):
    """The request body is not a valid order (answered with 400)."""


class OutOfStock(Exception):
    """A product has less stock than ordered (answered with 409)."""


def error(status: int, message: str, **extra) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


# ------------------------------------------------------------------ products

@require_GET
def product_list(request):
    products = [p.as_dict() for p in Product.objects.order_by("id")]
    return JsonResponse({"products": products, "unit": settings.APP_UNIT})


@require_GET
def product_detail(request, product_id: int):
    product = Product.objects.filter(id=product_id).first()
    if product is None:
        return error(404, f"no product {product_id}")
    return JsonResponse({**product.as_dict(), "unit": settings.APP_UNIT})


# ------------------------------------------------------------------ orders

def parse_order(body: bytes) -> tuple[str, Counter]:
    """Return the customer and the quantity ordered per product id."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    customer, items = data.get("customer"), data.get("items")
    if not isinstance(customer, str) or not 0 < len(customer) <= MAX_CUSTOMER_LENGTH:
        raise BadRequest(f"customer must be a string of 1 to {MAX_CUSTOMER_LENGTH} characters")
    if not isinstance(items, list) or not items:
        raise BadRequest("items must be a non-empty list")
    wanted: Counter = Counter()
    for item in items:
        product_id = item.get("product_id") if isinstance(item, dict) else None
        qty = item.get("qty") if isinstance(item, dict) else None
        if not is_positive_int(product_id) or not is_positive_int(qty) or qty > MAX_QTY:
            raise BadRequest(f'each item must be {{"product_id": <id>, "qty": <1..{MAX_QTY}>}}')
        wanted[product_id] += qty
    return customer, wanted


def is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def place_order(customer: str, wanted: Counter, key: str | None) -> Order:
    """Create the order and take its products from stock, all in one transaction."""
    with transaction.atomic():
        # Lock the products' rows (in id order, so that two orders cannot deadlock):
        # a concurrent order for the same products waits here until this one commits.
        products = Product.objects.select_for_update().filter(id__in=wanted).order_by("id")
        found = {product.id: product for product in products}
        if missing := sorted(set(wanted) - set(found)):
            raise BadRequest(f"no product {missing[0]}")
        for product_id, qty in wanted.items():
            if found[product_id].stock < qty:
                raise OutOfStock(product_id, found[product_id].stock)
        order = Order.objects.create(
            customer=customer, idempotency_key=key,
            total_cents=sum(found[pid].price_cents * qty for pid, qty in wanted.items()))
        OrderLine.objects.bulk_create(
            OrderLine(order=order, product=found[pid], qty=qty,
                      price_cents=found[pid].price_cents) for pid, qty in wanted.items())
        for product_id, qty in wanted.items():
            found[product_id].stock -= qty
            found[product_id].save(update_fields=["stock"])
    return order


def order_answer(order: Order, status: int) -> JsonResponse:
    return JsonResponse({"order_id": order.id, "total_cents": order.total_cents,
                         "unit": settings.APP_UNIT}, status=status)


@require_POST
def create_order(request):
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > MAX_KEY_LENGTH:
        return error(400, f"Idempotency-Key is longer than {MAX_KEY_LENGTH} characters")
    if key is not None and (first := Order.objects.filter(idempotency_key=key).first()):
        return order_answer(first, 200)             # a retry: the order exists already
    try:
        customer, wanted = parse_order(request.body)
        order = place_order(customer, wanted, key)
    except BadRequest as exc:
        return error(400, str(exc))
    except OutOfStock as exc:
        product_id, stock = exc.args
        return error(409, f"product {product_id} has only {stock} in stock",
                     product_id=product_id, stock=stock)
    except IntegrityError:
        # The same key in a concurrent request, which committed first: the unique
        # column refused our copy (and our transaction rolled back). Answer with theirs.
        first = Order.objects.filter(idempotency_key=key).first() if key else None
        if first is None:
            raise
        return order_answer(first, 200)
    return order_answer(order, 201)


@require_GET
def order_detail(request, order_id: int):
    order = Order.objects.filter(id=order_id).first()
    if order is None:
        return error(404, f"no order {order_id}")
    return JsonResponse({**order.as_dict(), "unit": settings.APP_UNIT})


# ------------------------------------------------------------------ health and errors

@require_GET
def healthz(request):
    """200 when the database answers, 503 when it does not (for load balancers)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return JsonResponse({"ok": False, "unit": settings.APP_UNIT, "error": str(exc)},
                            status=503)
    return JsonResponse({"ok": True, "unit": settings.APP_UNIT})


def not_found(request, exception):
    return error(404, "not found")


def server_error(request):
    return error(500, "internal error")
