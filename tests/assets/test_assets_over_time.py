"""Assets that stay right over time (in-process, drained): bounded waits, skipped against
completed, data versions and staleness, statuses, and what the API says at once."""

from __future__ import annotations

import inspect
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from support import wait_until

import flowstone as package
from flowstone import (
    AssetWorker,
    Context,
    DailyPartitions,
    FlowStone,
    FlowStoneError,
    MaterializationRecords,
    Output,
    asset,
    materialize,
    materialize_all,
)
from flowstone.insights import Insights
from flowstone.testing import all_enqueued, drain_queue

DAYS = DailyPartitions("2025-01-01")
DAY = "2025-01-15"


class Chain:
    """raw → revenue → report (daily), counting each function's calls; raw returns the
    current `source` value, as new data arriving would."""

    def __init__(self, **options: Any) -> None:
        self.calls: Counter[str] = Counter()
        self.source = 10

        @asset(partitions=DAYS, **options.get("raw", {}))
        def raw(ctx: Context, deps: dict[str, Any]) -> Any:
            self.calls["raw"] += 1
            return self.source

        @asset(depends_on=[raw], partitions=DAYS, **options.get("revenue", {}))
        def revenue(ctx: Context, deps: dict[str, Any]) -> int:
            self.calls["revenue"] += 1
            return deps["raw"] * 2

        @asset(depends_on=[revenue], partitions=DAYS, **options.get("report", {}))
        def report(ctx: Context, deps: dict[str, Any]) -> int:
            self.calls["report"] += 1
            return deps["revenue"] + 1

    def run_all(self, force: bool = False) -> None:
        materialize_all("report", DAY, force=force)
        drain_queue("assets", with_scheduled=True)

    def statuses(self) -> dict[str, str]:
        insights = Insights(package.get_default())
        return {name: insights.partitions(name, [DAY])[0].status for name in ("raw", "revenue", "report")}


def latest(name: str, partition: str | None = DAY) -> Any:
    record = MaterializationRecords().get(name, partition)
    assert record is not None
    return record


# -- 2. bounded waits and what the API says at once --------------------------------------------


def test_materialize_of_an_asset_whose_upstream_nothing_provides_says_so_at_once(
    flowstone: FlowStone,
) -> None:
    Chain()
    with pytest.raises(FlowStoneError) as raised:
        materialize("revenue", DAY)
    error = raised.value
    assert error.type == "dependency_not_ready"
    assert f"'revenue' reads raw {DAY}, which has never been materialized and is not queued" in error.message
    assert "materialize_all('revenue', ...)" in error.message
    assert all_enqueued(worker=AssetWorker) == []
    with pytest.raises(FlowStoneError, match=r"raw 2025-01-01, raw 2025-01-02, .* and 26 more"):
        package.backfill("revenue", start="2025-01-01", end="2025-01-31")
    materialize("raw", DAY)  # once the upstream is queued, the dependent may wait for it
    assert materialize("revenue", DAY).status == "queued"


def test_data_provided_from_outside_counts_as_there(flowstone: FlowStone) -> None:
    Chain()
    from flowstone.assets import default_io_managers

    stored = default_io_managers.get("postgres")  # the default IO manager
    stored.store(Context("raw", partition_key=DAY, fs=flowstone), 4)
    assert materialize("revenue", DAY).status == "queued"
    assert drain_queue("assets").completed == 1
    assert stored.load(Context("revenue", partition_key=DAY, fs=flowstone)) == 8


def test_a_wait_for_what_nothing_materializes_is_bounded_then_fails_naming_it(flowstone: FlowStone) -> None:
    Chain()
    job = flowstone.insert(AssetWorker.new({"asset_name": "revenue", "partition": DAY, "run_id": "cron"}))
    assert drain_queue("assets").snoozed == 1
    waiting = latest("revenue")
    assert waiting.status == "pending" and waiting.waiting_since is not None
    assert waiting.error_message == "waiting for raw (nothing is materializing it)"
    with flowstone.session() as conn:  # ten minutes pass (the default bound)
        conn.execute(
            "UPDATE flowstone.materializations SET waiting_since = waiting_since - interval '10 minutes'"
        )
    counts = drain_queue("assets", with_scheduled=True)
    assert counts.discarded == 1
    failed = latest("revenue")
    assert (failed.status, failed.error_type) == ("failed", "dependency_not_ready")
    assert failed.error_message == (
        "waited 600 s for raw, which nothing is materializing (never materialized, not queued): "
        "materialize it, or use materialize_all to queue the upstream too"
    )
    assert flowstone.get_job(job.id).state == "discarded"  # type: ignore[union-attr]


def test_the_bound_is_per_asset_and_the_snooze_never_outlasts_it(flowstone: FlowStone) -> None:
    Chain(revenue={"dependency_timeout": 5})
    job = flowstone.insert(AssetWorker.new({"asset_name": "revenue", "partition": DAY, "run_id": "r"}))
    drain_queue("assets")
    scheduled = flowstone.get_job(job.id)
    assert scheduled is not None and scheduled.state == "scheduled"
    assert scheduled.inserted_at is not None and scheduled.scheduled_at is not None
    assert (scheduled.scheduled_at - scheduled.inserted_at).total_seconds() < 6, "snoozed 5 s, not 30"
    with pytest.raises(FlowStoneError, match="dependency_timeout"):
        asset(name="bad", dependency_timeout=0)(lambda ctx, deps: None)


def test_wait_says_what_it_waits_for_and_times_out_by_default(
    flowstone: FlowStone, caplog: pytest.LogCaptureFixture
) -> None:
    assert inspect.signature(materialize).parameters["timeout"].default == 3600.0
    Chain()
    upstream = materialize("raw", DAY)
    with flowstone.session() as conn:  # the upstream is queued, due in an hour
        conn.execute(
            "UPDATE flowstone.jobs SET state = 'scheduled', scheduled_at = now() + interval '1 hour'"
            " WHERE id = %s",
            (upstream.job_id,),
        )
    errors: list[FlowStoneError] = []

    def wait() -> None:
        try:
            materialize("revenue", DAY, wait=True, timeout=3)
        except FlowStoneError as error:
            errors.append(error)

    waiter = threading.Thread(target=wait)
    waiter.start()
    wait_until(lambda: all_enqueued(worker=AssetWorker, args={"asset_name": "revenue"}), 5, "the job")
    assert drain_queue("assets").snoozed == 1
    waiter.join(10)
    [error] = errors
    assert error.type == "timeout"
    assert error.message.endswith("did not finish within 3 s (still pending: waiting for raw)")
    assert "materialization of revenue partition 2025-01-15 is waiting for raw" in caplog.text


# -- 3. skipped against completed, lineage kept ------------------------------------------------


def test_a_fresh_partition_is_skipped_reported_skipped_and_keeps_its_lineage(
    flowstone: FlowStone, drain_on_insert: Callable[[], threading.Thread]
) -> None:
    chain = Chain()
    chain.run_all()
    success = latest("revenue")
    drain_on_insert()
    result = materialize("revenue", DAY, wait=True, timeout=10)
    assert result.status == "skipped" and result.materialization is not None
    skip = result.materialization
    assert (skip.status, skip.stands_for, skip.data_version) == ("skipped", success.id, success.data_version)
    assert chain.calls["revenue"] == 1, "nothing computed"
    lineage = Insights(flowstone).lineage("revenue", DAY)
    assert lineage is not None and lineage.record.id == skip.id
    assert lineage.source is not None and lineage.source.id == success.id
    assert [(r.asset, r.status) for r in lineage.upstream] == [("raw", "success")]
    assert [(r.asset, r.status) for r in lineage.downstream] == [("report", "success")]


# -- 4. data versions and staleness ------------------------------------------------------------


def test_new_upstream_data_makes_the_chain_stale_and_materialize_all_recomputes_exactly_that(
    flowstone: FlowStone,
) -> None:
    chain = Chain()
    chain.run_all()
    assert chain.calls == {"raw": 1, "revenue": 1, "report": 1}
    assert chain.statuses() == {"raw": "fresh", "revenue": "fresh", "report": "fresh"}
    assert all(latest(name).data_version for name in ("raw", "revenue", "report"))

    chain.run_all()  # nothing changed: everything skipped
    assert chain.calls == {"raw": 1, "revenue": 1, "report": 1}

    chain.source = 20
    materialize("raw", DAY, force=True)
    drain_queue("assets")
    revenue = Insights(flowstone).partitions("revenue", [DAY])[0]
    report = Insights(flowstone).partitions("report", [DAY])[0]
    assert (revenue.status, revenue.reason) == ("stale", f"upstream raw partition {DAY} changed")
    assert (report.status, report.reason) == ("stale", f"upstream revenue partition {DAY} is stale")

    materialize("revenue", DAY)  # stale: recomputed, not skipped
    drain_queue("assets")
    assert chain.calls["revenue"] == 2 and latest("revenue").status == "success"
    assert (
        Insights(flowstone).partitions("report", [DAY])[0].reason
        == f"upstream revenue partition {DAY} changed"
    )

    chain.run_all()
    assert chain.calls == {"raw": 2, "revenue": 2, "report": 2}, "only the stale report was computed"
    assert chain.statuses() == {"raw": "fresh", "revenue": "fresh", "report": "fresh"}
    from flowstone.assets import default_io_managers

    assert default_io_managers.get("postgres").load(Context("report", partition_key=DAY, fs=flowstone)) == 41


def test_a_code_version_change_makes_that_asset_and_what_reads_it_stale(flowstone: FlowStone) -> None:
    chain = Chain(revenue={"code_version": "1"}, report={"code_version": "1"})
    chain.run_all()
    assert latest("revenue").code_version == "1"
    revenue = flowstone_registry_replace("revenue", code_version="2")
    assert revenue.code_version == "2"
    status = Insights(flowstone).partitions("revenue", [DAY])[0]
    assert (status.status, status.reason) == ("stale", "code version changed (1 → 2)")
    chain.run_all()
    # revenue recomputed with the same input and a versioned code: the same data version
    # would leave report fresh, but a new code version derives a new data version
    assert chain.calls == {"raw": 1, "revenue": 2, "report": 2}
    assert chain.statuses() == {"raw": "fresh", "revenue": "fresh", "report": "fresh"}


def flowstone_registry_replace(name: str, **changes: Any) -> Any:
    """Redefine a registered asset (as a deploy of new code would)."""
    from dataclasses import replace

    from flowstone.assets import default_assets

    graph = list(default_assets)
    default_assets.clear()
    default_assets.register_all([replace(a, **changes) if a.name == name else a for a in graph])
    return default_assets.require(name)


def test_a_returned_data_version_that_did_not_change_leaves_dependents_fresh(flowstone: FlowStone) -> None:
    calls: Counter[str] = Counter()
    checksum = {"value": "v1"}

    @asset(partitions=DAYS)
    def files(ctx: Context, deps: dict[str, Any]) -> Output:
        calls["files"] += 1
        return Output([1, 2, 3], data_version=checksum["value"])

    @asset(depends_on=[files], partitions=DAYS)
    def parsed(ctx: Context, deps: dict[str, Any]) -> int:
        calls["parsed"] += 1
        return sum(deps["files"])

    materialize_all("parsed", DAY)
    drain_queue("assets")
    assert latest("files").data_version == "v1"
    materialize("files", DAY, force=True)  # same checksum: same data
    drain_queue("assets")
    materialize("parsed", DAY)
    drain_queue("assets")
    assert calls == {"files": 2, "parsed": 1} and latest("parsed").status == "skipped"
    checksum["value"] = "v2"
    materialize("files", DAY, force=True)
    drain_queue("assets")
    materialize("parsed", DAY)
    drain_queue("assets")
    assert calls == {"files": 3, "parsed": 2}
    with pytest.raises(ValueError, match="data_version"):
        Output(1, data_version="")


def test_statuses_missing_queued_running_cancelled(flowstone: FlowStone) -> None:
    Chain(raw={"max_attempts": 1})
    insights = Insights(flowstone)
    assert [p.status for p in insights.partitions("raw", ["2025-01-14", DAY])] == ["missing", "missing"]
    job = materialize("raw", DAY).job_id
    assert insights.partitions("raw", [DAY])[0].status == "queued"
    with flowstone.session() as conn:  # claimed: executing
        conn.execute("UPDATE flowstone.jobs SET state = 'executing', attempt = 1, attempted_at = now()")
    assert insights.partitions("raw", [DAY])[0].status == "running"
    with flowstone.session() as conn:  # its job is cancelled with plain SQL before it ran
        conn.execute("UPDATE flowstone.jobs SET state = 'cancelled', cancelled_at = now()")
    cancelled = insights.partitions("raw", [DAY])[0]
    assert (cancelled.status, cancelled.reason) == (
        "cancelled",
        f"its job {job} ended cancelled without a result",
    )
    assert cancelled.record is not None and cancelled.record.status == "cancelled", "the record itself"
    every = insights.partitions("raw")  # every partition closed by now
    assert every[0].partition == "2025-01-01" and len(every) > 300
