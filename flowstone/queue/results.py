"""Values a worker's `perform` may return to steer its job instead of completing it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from flowstone.errors import ValidationError, ValidationTypeError


@dataclass(frozen=True, slots=True)
class Snooze:
    """Run again after `seconds`; the attempt is not consumed and `meta.snoozed` counts up."""

    seconds: float

    def __post_init__(self) -> None:
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, int | float):
            raise ValidationTypeError(f"Snooze seconds must be a number; got {self.seconds!r}")
        try:
            seconds = float(self.seconds)
        except OverflowError:
            seconds = math.inf
        if not math.isfinite(seconds) or seconds < 0:
            raise ValidationError(f"Snooze seconds must be a finite number >= 0; got {self.seconds!r}")


@dataclass(frozen=True, slots=True)
class Discard:
    """Stop retrying: the job is discarded and the reason recorded in its errors."""

    reason: str = "discarded"


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel the job: it ends `cancelled` and the reason is recorded in its errors."""

    reason: str = "cancelled"


Result = Snooze | Discard | Cancel | None
