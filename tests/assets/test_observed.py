"""Observed source assets: each observation records the version; only a changed one
queues the eager dependent."""

from __future__ import annotations

from typing import Any

import pytest

from flowstone import Context, FlowStone, FlowStoneError, asset, materialize, source_asset
from flowstone.insights import Insights
from flowstone.testing import drain_queue


def test_only_a_changed_observation_recomputes_the_eager_dependent(flowstone: FlowStone) -> None:
    outside = {"version": "v1"}
    runs: list[str] = []

    def orders(ctx: Context) -> str:
        return outside["version"]

    source_asset(observe=orders, schedule=None)

    @asset(depends_on=["orders"], automation="eager")
    def report(ctx: Context, deps: dict[str, Any]) -> str:
        runs.append(deps["orders"]["data_version"])
        return "done"

    for version in ("v1", "v1", "v2"):
        outside["version"] = version
        materialize("orders", run_id=f"observe/{version}/{len(runs)}")
        drain_queue("assets", with_recursion=True)  # with the eager jobs it queues
    assert runs == ["v1", "v2"], "recomputed for each new version, not for the same one"
    assert [r.data_version for r in Insights(flowstone).history("orders")] == ["v2", "v1", "v1"]


def test_an_observation_without_a_version_fails_saying_so(flowstone: FlowStone) -> None:
    source_asset(name="blank", observe=lambda ctx: None, schedule=None)
    materialize("blank", run_id="blank")
    drain_queue("assets")
    (record,) = Insights(flowstone).history("blank")
    assert record.status == "failed" and "gave no data version" in (record.error_message or "")


def test_observe_must_be_a_function() -> None:
    with pytest.raises(FlowStoneError, match="observe must be a function"):
        source_asset(observe="SELECT count(*) FROM orders")  # type: ignore[arg-type]
