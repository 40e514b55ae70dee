"""The shop's workers, found by `flowstone.contrib.django` when Django starts."""

from flowstone import Job, Worker


class ShipOrder(Worker):
    """Mark an order shipped (through Django's ORM, in the worker process)."""

    name = "shop.ShipOrder"
    queue = "shop"

    def perform(self, job: Job) -> None:
        from shop.models import Order

        Order.objects.filter(id=job.args["order_id"]).update(shipped=True)
