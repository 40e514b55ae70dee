"""`Context`: what an asset function and its IO manager know about one materialization."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowstone.assets.definitions import Asset
    from flowstone.queue.instance import FlowStone


@dataclass(frozen=True)
class Context:
    """What an asset function (and an IO manager) knows about the materialization.

    `partition` is the key (e.g. a `date`), `partition_key` its string form (None when
    unpartitioned). Entries the function adds to `metadata` are recorded with it.
    """

    asset: str
    partition: Any = None
    partition_key: str | None = None
    run_id: str = ""
    attempt: int = 1
    job_id: int | None = None
    force: bool = False
    fs: FlowStone | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def for_upstream(self, upstream: Asset) -> Context:
        """The context locating `upstream`'s data for this partition."""
        if upstream.partitions is None:
            return replace(self, asset=upstream.name, partition=None, partition_key=None, metadata={})
        return replace(self, asset=upstream.name, metadata={})
