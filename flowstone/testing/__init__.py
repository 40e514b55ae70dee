"""Test helpers mirroring Oban.Testing, plus pytest fixtures (`flowstone.testing.pytest_plugin`).

The helpers are imported on first use: pytest loads the plugin module below this package
in every project FlowStone is installed into, and that must cost nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowstone._lazy import lazy_exports

_EXPORTS: dict[str, tuple[str, str]] = {
    "with_chaos": ("flowstone.queue.chaos", "chaos"),
    **{
        name: ("flowstone.testing.helpers", name)
        for name in (
            "DrainResult",
            "adrain_queue",
            "all_enqueued",
            "aperform_job",
            "assert_enqueued",
            "drain_queue",
            "perform_job",
            "refute_enqueued",
            "with_testing_mode",
        )
    },
}

__all__ = [
    "DrainResult",
    "adrain_queue",
    "all_enqueued",
    "aperform_job",
    "assert_enqueued",
    "drain_queue",
    "perform_job",
    "refute_enqueued",
    "with_chaos",
    "with_testing_mode",
]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)

if TYPE_CHECKING:
    from flowstone.queue.chaos import chaos as with_chaos
    from flowstone.testing.helpers import (
        DrainResult as DrainResult,
        adrain_queue as adrain_queue,
        all_enqueued as all_enqueued,
        aperform_job as aperform_job,
        assert_enqueued as assert_enqueued,
        drain_queue as drain_queue,
        perform_job as perform_job,
        refute_enqueued as refute_enqueued,
        with_testing_mode as with_testing_mode,
    )
