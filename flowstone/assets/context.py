"""`Context`: what an asset function and its IO manager know about one materialization."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from flowstone.assets.compute_logs import asset_logger

if TYPE_CHECKING:
    from flowstone.assets.definitions import Asset
    from flowstone.queue.instance import FlowStone


SAME: Any = object()
"""`Context.for_upstream`'s default: the same partition as the context's own."""


@dataclass(frozen=True)
class Context:
    """What an asset function (and an IO manager) knows about the materialization.

    `partition` is the key (e.g. a `date`), `partition_key` its string form (None when
    unpartitioned). Entries the function adds to `metadata` are recorded with it.
    `as_type`, in the context an IO manager loads an upstream's data with: the type the
    dependent asked for (`Dep(..., as_type=polars.DataFrame)`), None for as stored.
    `log`: a logger whose records show in the materialization's compute log.
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
    as_type: type | None = None

    @property
    def log(self) -> logging.Logger:
        """The asset's logger (`flowstone.asset.<name>`, from INFO up): what it records
        is kept in the materialization's compute log, as is anything printed."""
        return asset_logger(self.asset)

    def for_upstream(self, upstream: Asset, partition: Any = SAME) -> Context:
        """The context locating `upstream`'s data at `partition` (a canonical key of the
        upstream's; default: this context's own partition)."""
        if upstream.partitions is None:
            return replace(self, asset=upstream.name, partition=None, partition_key=None, metadata={})
        if partition is SAME:
            return replace(self, asset=upstream.name, metadata={})
        text = upstream.partitions.to_text(partition)
        return replace(self, asset=upstream.name, partition=partition, partition_key=text, metadata={})
