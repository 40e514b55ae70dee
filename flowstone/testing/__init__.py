"""Test helpers mirroring Oban.Testing, plus pytest fixtures (`flowstone.testing.pytest_plugin`)."""

from flowstone.queue.executor import chaos as with_chaos
from flowstone.testing.helpers import (
    DrainResult,
    adrain_queue,
    all_enqueued,
    aperform_job,
    assert_enqueued,
    drain_queue,
    perform_job,
    refute_enqueued,
    with_testing_mode,
)

__all__ = [
    "DrainResult",
    "adrain_queue",
    "all_enqueued",
    "aperform_job",
    "assert_enqueued",
    "drain_queue",
    "perform_job",
    "refute_enqueued",
    "with_chaos",
    "with_testing_mode",
]
