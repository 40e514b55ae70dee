"""Data versions and staleness.

Every success record carries a data version: the one the asset function returned
(`return Output(value, data_version="…")`), else one derived from the asset's
`code_version` and the data versions of the upstream records it read. An asset without a
`code_version` gets a new version on every materialization (nothing tells that its code
did not change); with one, recomputing from the same inputs gives the same version, so
its dependents stay fresh.

A partition whose last finished record succeeded is **stale** when its asset's code
version changed since, or when the upstream partitions it maps to now have latest
successes of other data versions than the ones it read (a new upstream partition in its
mapping counts). Otherwise it is fresh: `materialize` skips it unless forced.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

InputKey = tuple[str, str]
"""An upstream (asset, partition column) read by a materialization ('' when unpartitioned)."""


@dataclass(frozen=True)
class Output:
    """What an asset function may return instead of the bare value, to name its data
    version (e.g. a checksum of the source file): equal versions mean equal data."""

    value: Any
    data_version: str | None = None

    def __post_init__(self) -> None:
        if self.data_version is not None and (
            not isinstance(self.data_version, str) or not self.data_version
        ):
            raise ValueError(
                f"Output.data_version must be a non-empty string or None; got {self.data_version!r}"
            )


def derived_version(code_version: str | None, record_id: int, inputs: Mapping[InputKey, str | None]) -> str:
    """The data version of a materialization whose function named none."""
    basis = [code_version if code_version is not None else f"#{record_id}", sorted(inputs.items())]
    return hashlib.blake2b(json.dumps(basis).encode(), digest_size=8).hexdigest()


def inputs_of(rows: Iterable[Any]) -> dict[InputKey, str | None]:
    """What a success read, from `[asset, partition, data_version]` triples."""
    return {(asset, partition): version for asset, partition, version in rows}


@dataclass(frozen=True)
class LastSuccess:
    """A partition's latest success: its id, versions, and the versions it read."""

    id: int
    code_version: str | None
    data_version: str | None
    inputs: dict[InputKey, str | None] = field(default_factory=dict)


def stale_reason(
    code_version: str | None, last: LastSuccess, current: Mapping[InputKey, str | None]
) -> str | None:
    """Why the partition of `last` is stale given its asset's `code_version` and the data
    versions its mapped upstream partitions have now; None when it is fresh."""
    if last.code_version != code_version:
        return f"code version changed ({last.code_version or 'none'} → {code_version or 'none'})"
    changed = sorted(
        key
        for key in current.keys() | last.inputs.keys()
        if key not in current or key not in last.inputs or current[key] != last.inputs[key]
    )
    if not changed:
        return None
    asset, partition = changed[0]
    where = f" partition {partition}" if partition else ""
    more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
    return f"upstream {asset}{where} changed{more}"
