"""The shop's URLs: placing orders, sync and async."""

from django.urls import path
from shop import views

urlpatterns = [
    path("orders/", views.place_order),
    path("orders/plain/", views.place_order_in_request),
    path("orders/async/", views.place_order_async),
    path("orders/async/direct/", views.place_order_async_direct),
]
