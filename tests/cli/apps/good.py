"""A well-formed app: one worker on the `rt` queue, in a registry of its own."""

from flowstone import FlowStone, Job, Worker, WorkerRegistry

registry = WorkerRegistry()


@registry.register
class Ping(Worker):
    queue = "rt"
    register = False

    def perform(self, job: Job) -> None:
        return None


app = FlowStone(registry=registry)
