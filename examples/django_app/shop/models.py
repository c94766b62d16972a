"""Products, and the orders placed for them."""

from django.db import models


class Product(models.Model):
    name = models.CharField(max_length=100, unique=True)
    price_cents = models.PositiveIntegerField()
    stock = models.PositiveIntegerField(default=0)

    def as_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "price_cents": self.price_cents,
                "stock": self.stock}


class Order(models.Model):
    customer = models.CharField(max_length=100)
    total_cents = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    # The client's Idempotency-Key header: a retried POST finds its first order here.
    idempotency_key = models.CharField(max_length=64, unique=True, null=True, blank=True)

    def as_dict(self) -> dict:
        return {"order_id": self.id, "customer": self.customer,
                "total_cents": self.total_cents, "created_at": self.created_at.isoformat(),
                "lines": [line.as_dict() for line in self.lines.order_by("id")]}


class OrderLine(models.Model):
    order = models.ForeignKey(Order, related_name="lines", on_delete=models.CASCADE)
    product = models.ForeignKey(Product, related_name="+", on_delete=models.PROTECT)
    qty = models.PositiveIntegerField()
    price_cents = models.PositiveIntegerField()    # the price when the order was placed

    def as_dict(self) -> dict:
        return {"product_id": self.product_id, "qty": self.qty,
                "price_cents": self.price_cents}
