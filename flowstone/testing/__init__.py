"""Test helpers mirroring Oban.Testing, plus pytest fixtures (`flowstone.testing.pytest_plugin`).

The helpers of `__all__` are imported on first use (flowstone/_lazy.py): pytest loads the
plugin module below this package in every project FlowStone is installed into, and that
must cost nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowstone._lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, globals(), __all__, homes=["flowstone.testing.helpers"])

if TYPE_CHECKING:
    from flowstone.testing.helpers import (
        DrainResult as DrainResult,
        adrain_queue as adrain_queue,
        all_enqueued as all_enqueued,
        aperform_job as aperform_job,
        assert_enqueued as assert_enqueued,
        drain_queue as drain_queue,
        perform_job as perform_job,
        refute_enqueued as refute_enqueued,
        with_chaos as with_chaos,
        with_testing_mode as with_testing_mode,
    )
