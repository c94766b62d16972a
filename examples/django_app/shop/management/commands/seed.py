"""``python manage.py seed``: create the example's products, if they are missing."""

from django.core.management.base import BaseCommand

from shop.models import Product

NAMES = ["teapot", "kettle", "cup", "saucer", "tea tin", "strainer", "tray", "cosy"]


class Command(BaseCommand):
    help = "Create products 1..N with some stock; products that exist are left as they are."

    def add_arguments(self, parser):
        parser.add_argument("--products", type=int, default=len(NAMES),
                            help="how many products (default: %(default)s)")
        parser.add_argument("--stock", type=int, default=100,
                            help="the stock of each new product (default: %(default)s)")

    def handle(self, *args, products: int, stock: int, **options):
        created = 0
        for i in range(products):
            name = NAMES[i % len(NAMES)] + (f" {i // len(NAMES) + 1}" if i >= len(NAMES) else "")
            _, new = Product.objects.get_or_create(
                name=name, defaults={"price_cents": 500 + 250 * i, "stock": stock})
            created += new
        self.stdout.write(f"{created} product(s) created, {products - created} already there")
