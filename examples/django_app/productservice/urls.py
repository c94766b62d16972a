"""The JSON API: products, orders and a health check."""

from django.urls import path
from shop import views

urlpatterns = [
    path("products", views.product_list),
    path("products/<int:product_id>", views.product_detail),
    path("orders", views.create_order),
    path("orders/<int:order_id>", views.order_detail),
    path("healthz", views.healthz),
]

# Errors are JSON too, not Django's HTML pages.
handler404 = "shop.views.not_found"
handler500 = "shop.views.server_error"
