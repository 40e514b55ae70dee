"""FlowStone in a Django project (`pip install 'flowstone[django]'`).

    INSTALLED_APPS = [..., "flowstone.contrib.django"]
    FLOWSTONE = {"queues": {"default": 10}}     # the keyword arguments of FlowStone(...)

The instance is `flowstone.contrib.django.fs` (also `apps.get_app_config("flowstone").fs`
and the default instance of `Worker.enqueue`), built on first use from `FLOWSTONE`; its
database is Django's `DATABASES["default"]` unless `FLOWSTONE["database_url"]` names
another. Inside `transaction.atomic()` its inserts join Django's transaction: the job
commits and rolls back with the block (`conn=django.db.connection` does the same on any
instance, and in async code through `ainsert`). `python manage.py flowstone COMMAND`
runs any `flowstone` command with this instance; `staff_dashboard()` is the dashboard
for Django's staff, `PrefixRouter` mounts it beside Django's ASGI application.
FlowStone's tables stay FlowStone's: `manage.py flowstone migrate` creates them, Django's
`migrate` never touches them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowstone._lazy import lazy_exports

__all__ = [
    "DjangoFlowStone",
    "PrefixRouter",
    "database_url",
    "fs",
    "get_flowstone",
    "reset",
    "staff_dashboard",
]

_getattr, __dir__ = lazy_exports(
    __name__,
    globals(),
    __all__,
    homes=["flowstone.contrib.django.instance", "flowstone.contrib.django.dashboard"],
)


def __getattr__(name: str) -> object:
    """`fs`: the instance (never kept here, so that `reset` can replace it)."""
    if name == "fs":
        from flowstone.contrib.django.instance import get_flowstone

        return get_flowstone()
    return _getattr(name)


if TYPE_CHECKING:
    from flowstone.contrib.django.dashboard import (
        PrefixRouter as PrefixRouter,
        staff_dashboard as staff_dashboard,
    )
    from flowstone.contrib.django.instance import (
        DjangoFlowStone as DjangoFlowStone,
        database_url as database_url,
        get_flowstone as get_flowstone,
        reset as reset,
    )

    fs: DjangoFlowStone
