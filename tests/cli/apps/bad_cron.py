"""An app whose worker has a cron expression that cannot be parsed."""

from flowstone import FlowStone, Job, Worker, WorkerRegistry

registry = WorkerRegistry()


@registry.register
class Nightly(Worker):
    queue = "rt"
    register = False
    cron = "0 25 * * *"

    def perform(self, job: Job) -> None:
        return None


app = FlowStone(registry=registry)
