"""proc_app, with proc_assets' schedule, on a node whose wall clock is FS_CLOCK_SKEW
seconds off (faketime is not at hand): every FlowStone module reads the time through a
`datetime` whose `now()` is shifted. Whatever must happen on time has to follow the
database's clock instead."""

import importlib
import os
import pkgutil
import sys
from datetime import datetime, timedelta, tzinfo
from typing import Any

SKEW = timedelta(seconds=float(os.environ.get("FS_CLOCK_SKEW", "0")))


class _Same(type):
    """Instances of the real `datetime` pass isinstance checks against the skewed one."""

    def __instancecheck__(cls, value: Any) -> bool:
        return isinstance(value, datetime)


class SkewedDatetime(datetime, metaclass=_Same):
    """`datetime` with a clock SKEW off."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> Any:
        return datetime.now(tz) + SKEW


for package in ("flowstone.queue", "flowstone.assets"):
    for module in pkgutil.walk_packages(importlib.import_module(package).__path__, f"{package}."):
        importlib.import_module(module.name)
for name, loaded in list(sys.modules.items()):
    if name.startswith("flowstone") and getattr(loaded, "datetime", None) is datetime:
        loaded.datetime = SkewedDatetime  # type: ignore[attr-defined]

from proc_assets import app  # noqa: E402 - after the clock is skewed

__all__ = ["app"]
