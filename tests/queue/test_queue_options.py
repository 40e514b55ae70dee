"""Per-queue options: global and rate limits, partitions; bad ones are named."""

from __future__ import annotations

import pytest

from flowstone import FlowStone, QueueConfig
from flowstone.queue.config import LimitPartition, RateLimit

DESIGN = {
    "mail": 10,
    "scrape": {
        "limit": 10,
        "global_limit": 3,
        "rate_limit": {"allowed": 60, "period": 60},
        "partition": {"args": ["tenant_id"]},
    },
}


def test_the_design_example_configures_each_option():
    fs = FlowStone("postgresql://unused", queues=DESIGN)
    assert fs.settings.queues["mail"] == QueueConfig(limit=10)
    scrape = fs.settings.queues["scrape"]
    assert scrape == QueueConfig(
        limit=10,
        global_limit=3,
        rate_limit=RateLimit(allowed=60, period=60),
        partition=LimitPartition(args=("tenant_id",)),
    )
    assert scrape.limited and not fs.settings.queues["mail"].limited
    assert scrape.rate_limit is not None and scrape.rate_limit.bucket == 3.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"limit": 5, "global_limit": 0},
            "queue 'q': global_limit: Input should be greater than or equal to 1",
        ),
        ({"limit": 5, "rate_limit": {"allowed": 5}}, "queue 'q': rate_limit.period: Field required"),
        (
            {"limit": 5, "rate_limit": {"allowed": 5, "period": 0}},
            "rate_limit.period: Input should be greater than 0",
        ),
        ({"limit": 5, "partition": {"args": ["t"]}}, "partition applies to global_limit or rate_limit"),
        (
            {"limit": 5, "global_limit": 2, "partition": {"args": []}},
            "partition.args: Tuple should have at least 1",
        ),
        ({"limit": 5, "global_limt": 2}, "global_limt: Extra inputs are not permitted"),
    ],
)
def test_bad_options_are_named_with_their_queue(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        FlowStone("postgresql://unused", queues={"q": options})
