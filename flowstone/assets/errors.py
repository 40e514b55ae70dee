"""`FlowStoneError`: the one error type of the asset layer, classified so callers can act on it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

ErrorType = Literal[
    "execution_error",
    "dependency_failed",
    "dependency_not_ready",
    "asset_not_found",
    "validation_error",
    "io_error",
    "timeout",
]
ERROR_TYPES: tuple[str, ...] = get_args(ErrorType)

# Transient by default: running again may succeed. The rest fail the same way every time.
_RETRYABLE_BY_DEFAULT = frozenset({"execution_error", "dependency_not_ready", "io_error", "timeout"})


class FlowStoneError(Exception):
    """An asset-layer failure: `type` (one of ERROR_TYPES), a message, whether retrying may
    help, and context (asset, partition, … whatever locates the problem)."""

    def __init__(
        self,
        type: ErrorType,
        message: str,
        *,
        retryable: bool | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        if type not in ERROR_TYPES:
            raise ValueError(f"unknown FlowStoneError type {type!r}; expected one of {ERROR_TYPES}")
        super().__init__(message)
        self.type: ErrorType = type
        self.message = message
        self.retryable = type in _RETRYABLE_BY_DEFAULT if retryable is None else retryable
        self.context: dict[str, Any] = dict(context or {})

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"FlowStoneError(type={self.type!r}, message={self.message!r}, "
            f"retryable={self.retryable!r}, context={self.context!r})"
        )
