from flowstone import Worker
from flowstone.testing import assert_enqueued, drain_queue


class Hello(Worker):
    queue = "smoke"

    def perform(self, job):
        return None


def test_insert_and_drain(flowstone):
    job = Hello.enqueue({"name": "x"})
    assert job.state == "available"
    assert_enqueued(worker=Hello, args={"name": "x"})
    result = drain_queue("smoke")
    assert result.completed == 1
    assert flowstone.get_job(job.id).state == "completed"
