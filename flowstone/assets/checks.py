"""Asset checks: data-quality functions run after each materialization of an asset.

    @asset_check(asset="orders", blocking=True)
    def no_negative_amounts(ctx, value):
        return all(o["amount"] >= 0 for o in value)     # or CheckResult(passed=…, metadata=…)

A check receives the value the asset function just returned. Its result is recorded with
the materialization (`<schema>.asset_check_results`). A failed *blocking* check fails the
materialization (error type `check_failed`): its dependents do not read it and eager
automation does not fire; a failed non-blocking check is recorded and nothing else. A
check that raises counts as failed, with the exception as its description.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from flowstone.errors import FlowStoneError
from flowstone.queue.validation import check_json

if TYPE_CHECKING:
    from flowstone.assets.context import Context
    from flowstone.assets.definitions import Asset, AssetRegistry

CheckFn = Callable[["Context", Any], "bool | CheckResult"]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


@dataclass(frozen=True)
class CheckResult:
    """What a check found: passed or not, a few words, metadata to record."""

    passed: bool
    description: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class AssetCheck:
    """A named check of `asset`'s materializations; `blocking` fails them when it fails."""

    name: str
    asset: str
    check_fn: CheckFn
    blocking: bool = False
    description: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise FlowStoneError(
                "validation_error", f"check name must be letters, digits and '_'; got {self.name!r}"
            )
        if not callable(self.check_fn):
            raise FlowStoneError("validation_error", f"check {self.name!r}: check_fn must be callable")

    def run(self, ctx: Context, value: Any) -> CheckOutcome:
        """Run the check; an exception, a result that is not a bool or CheckResult, or
        metadata JSON cannot carry fails it (saying so)."""
        try:
            found = self.check_fn(ctx, value)
            if isinstance(found, bool):
                found = CheckResult(found)
            if not isinstance(found, CheckResult):
                return self._failed(f"returned {type(found).__name__}, not a bool or CheckResult")
            metadata = check_json(dict(found.metadata), "metadata")
        except Exception as error:
            return self._failed(f"{type(error).__name__}: {error}")
        described = None if found.description is None else str(found.description)
        return CheckOutcome(self, CheckResult(bool(found.passed), described, metadata))

    def _failed(self, why: str) -> CheckOutcome:
        return CheckOutcome(self, CheckResult(False, why))


@dataclass(frozen=True)
class CheckOutcome:
    """One check's result for one materialization."""

    check: AssetCheck
    result: CheckResult

    @property
    def blocks(self) -> bool:
        """Whether this outcome fails the materialization."""
        return self.check.blocking and not self.result.passed

    def row(self) -> dict[str, Any]:
        """The row recorded for it (without the materialization's id)."""
        return {
            "check_name": self.check.name,
            "passed": self.result.passed,
            "blocking": self.check.blocking,
            "description": self.result.description,
            "metadata": dict(self.result.metadata),
        }


def blocking_failure(outcomes: list[CheckOutcome], ctx: Context) -> FlowStoneError | None:
    """The check_failed error of the blocking checks that failed, if any."""
    failed = [o for o in outcomes if o.blocks]
    if not failed:
        return None
    described = "; ".join(
        f"{o.check.name}" + (f" ({o.result.description})" if o.result.description else "") for o in failed
    )
    return FlowStoneError(
        "check_failed",
        f"blocking check failed: {described}",
        retryable=False,
        context={
            "asset": ctx.asset,
            "partition": ctx.partition_key,
            "checks": [o.check.name for o in failed],
        },
    )


@overload
def asset_check(fn: CheckFn, /) -> AssetCheck: ...


@overload
def asset_check(
    fn: None = None,
    /,
    *,
    asset: str | Asset,
    name: str | None = None,
    blocking: bool = False,
    description: str | None = None,
    registry: AssetRegistry | None = None,
) -> Callable[[CheckFn], AssetCheck]: ...


def asset_check(
    fn: CheckFn | None = None,
    /,
    *,
    asset: str | Asset | None = None,
    name: str | None = None,
    blocking: bool = False,
    description: str | None = None,
    registry: AssetRegistry | None = None,
) -> AssetCheck | Callable[[CheckFn], AssetCheck]:
    """Define `fn(ctx, value)` as a check of `asset` (registered already) in `registry`
    (default: the one `@asset` fills); its name defaults to the function's."""
    from flowstone.assets.definitions import default_assets

    def define(function: CheckFn) -> AssetCheck:
        if asset is None:
            raise FlowStoneError("validation_error", "asset_check needs asset=: the asset it checks")
        target = asset if isinstance(asset, str) else asset.name
        check = AssetCheck(
            name=name or function.__name__,
            asset=target,
            check_fn=function,
            blocking=blocking,
            description=description if description is not None else (function.__doc__ or None),
        )
        return (registry if registry is not None else default_assets).register_check(check)

    return define(fn) if fn is not None else define
