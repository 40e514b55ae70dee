"""Views placing an order and enqueuing its shipping: both commit or neither does."""

import json

from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse

from flowstone.contrib.django import get_flowstone
from shop.models import Order
from shop.workers import ShipOrder


class RefusedError(Exception):
    """Raised after the order and its job were written, to roll both back."""


def _place(item: str, fail: bool) -> int:
    """Create the order and enqueue its shipping (the default path: `ShipOrder.enqueue`)."""
    order = Order.objects.create(item=item)
    ShipOrder.enqueue({"order_id": order.id})
    if fail:
        raise RefusedError(item)
    return int(order.id)


def _item(request: HttpRequest) -> tuple[str, bool]:
    body = json.loads(request.body or b"{}")
    return str(body.get("item", "book")), bool(body.get("fail"))


def place_order(request: HttpRequest) -> JsonResponse:
    """An explicit `transaction.atomic()` block."""
    item, fail = _item(request)
    with transaction.atomic():
        order = _place(item, fail)
    return JsonResponse({"order": order})


def place_order_in_request(request: HttpRequest) -> JsonResponse:
    """No block of its own: atomic only when ATOMIC_REQUESTS is on."""
    item, fail = _item(request)
    return JsonResponse({"order": _place(item, fail)})


@transaction.non_atomic_requests
async def place_order_async(request: HttpRequest) -> JsonResponse:
    """An async view: the transaction runs in Django's sync thread (`sync_to_async`)."""
    item, fail = _item(request)

    @sync_to_async
    def atomically() -> int:
        with transaction.atomic():
            return _place(item, fail)

    return JsonResponse({"order": await atomically()})


@transaction.non_atomic_requests
async def place_order_async_direct(request: HttpRequest) -> JsonResponse:
    """An async view enqueuing with `ainsert(conn=connection)` on Django's connection."""
    item, _ = _item(request)
    order = await Order.objects.acreate(item=item)
    job = await get_flowstone().ainsert(ShipOrder.new({"order_id": order.id}), conn=connection)
    return JsonResponse({"order": order.id, "job": job.id})
