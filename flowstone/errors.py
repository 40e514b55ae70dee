"""`FlowStoneError`: the one error type of the whole package, classified by `type`.

Every error FlowStone raises on purpose is a `FlowStoneError` (catch that one class);
`type` tells what went wrong so callers can act on it, `retryable` whether running again
may help, `context` locates the problem. Bad input is a `ValidationError`, which is also
a `ValueError` (or, for a value of the wrong kind, `ValidationTypeError`, also a
`TypeError`), so code written against the built-in exceptions keeps working.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

ErrorType = Literal[
    "validation_error",
    "connection_error",
    "schema_error",
    "execution_error",
    "dependency_failed",
    "dependency_not_ready",
    "check_failed",
    "asset_not_found",
    "io_error",
    "timeout",
]
ERROR_TYPES: tuple[str, ...] = get_args(ErrorType)

# Transient by default: running again may succeed. The rest fail the same way every time.
_RETRYABLE_BY_DEFAULT = frozenset(
    {"connection_error", "execution_error", "dependency_not_ready", "io_error", "timeout"}
)


class FlowStoneError(Exception):
    """A failure FlowStone names: `type` (one of ERROR_TYPES), a message, whether retrying
    may help, and context (asset, partition, field … whatever locates the problem)."""

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
            f"{type(self).__name__}(type={self.type!r}, message={self.message!r}, "
            f"retryable={self.retryable!r}, context={self.context!r})"
        )


class ValidationError(FlowStoneError, ValueError):
    """Bad input (a `validation_error`): a value that does not fit where it was given."""

    def __init__(self, message: str, *, context: Mapping[str, Any] | None = None) -> None:
        super().__init__("validation_error", message, retryable=False, context=context)

    def __str__(self) -> str:
        return self.message


class ValidationTypeError(ValidationError, TypeError):
    """Bad input of the wrong kind (a mapping expected, a string given, …)."""


class JobFailedError(FlowStoneError):
    """An awaited job ended without completing: discarded or cancelled (`state`), with
    its last recorded error."""

    def __init__(self, job_id: int, state: str, error: str | None) -> None:
        super().__init__(
            "execution_error",
            f"job {job_id} was {state}: {error or 'no error recorded'}",
            retryable=False,
            context={"job_id": job_id, "state": state, "error": error},
        )
        self.job_id = job_id
        self.state = state


class AwaitTimeoutError(FlowStoneError, TimeoutError):
    """An awaited job did not finish in time (it goes on; await it again if you like)."""

    def __init__(self, job_id: int, timeout: float) -> None:
        super().__init__(
            "timeout",
            f"job {job_id} did not finish within {timeout} s",
            context={"job_id": job_id, "timeout": timeout},
        )


def one_line(error: BaseException) -> str:
    """The error as one line (pydantic lists each invalid field on lines of its own)."""
    import pydantic

    if isinstance(error, pydantic.ValidationError):
        return "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg'].removeprefix('Value error, ')}"
            for e in error.errors()
        )
    return " ".join(str(error).split())
