"""The async twins of the management API behave like their sync originals."""

from __future__ import annotations

import pytest

from flowstone import FlowStone, Worker
from flowstone.testing import adrain_queue


class Twin(Worker):
    queue = "twins"

    def perform(self, job: object) -> None:
        raise RuntimeError("always")


@pytest.mark.anyio
async def test_async_twins_of_enqueue_retry_delete_counts_and_nodes(flowstone: FlowStone) -> None:
    job = await Twin.aenqueue({"n": 1}, max_attempts=1)
    await adrain_queue("twins")
    assert (await flowstone.aqueue_counts()) == {"twins": {"discarded": 1}}
    retried = await flowstone.aretry_job(job.id)
    assert retried is not None and retried.state == "available" and retried.max_attempts == 2
    assert await flowstone.adelete_job(job.id) is True
    assert await flowstone.aget_job(job.id) is None
    assert await flowstone.anodes() == []
    await flowstone.aclose()
