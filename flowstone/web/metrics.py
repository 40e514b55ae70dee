"""Prometheus metrics of a FlowStone cluster, read through `flowstone.insights` at each
scrape: the same series at the dashboard's `/metrics` and from `flowstone metrics`.

A scrape costs what the queues page costs (counts from partial indexes up to 1,000 rows
per state, the planner's estimates beyond), plus the assets' partition statuses (a read of
every recorded partition, as `flowstone assets ls` does): cheap enough every 15 s on a
table of millions of jobs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flowstone.insights import Insights, NodeInfo

DEFAULT_PORT = 9464


def _gauge(name: str, text: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"flowstone_{name}", text, labels=labels)


class FlowStoneCollector(Collector):
    """Collects the cluster's series from the read layer on every scrape."""

    def __init__(self, insights: Insights) -> None:
        self.insights = insights

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        yield from self._queues()
        yield from self._throughput()
        yield from self._assets()
        took = _gauge("scrape_duration_seconds", "Time spent reading these metrics from the database.", [])
        took.add_metric([], time.perf_counter() - started)
        yield took

    def _queues(self) -> Iterator[Metric]:
        overview = self.insights.overview()
        jobs = _gauge(
            "jobs", "Jobs per queue and state (estimated above 1,000 per state).", ["queue", "state"]
        )
        estimated = _gauge(
            "jobs_estimated", "1 when a state's counts are the planner's estimates.", ["state"]
        )
        limit = _gauge("queue_limit", "Jobs a node may run at once in a queue.", ["queue", "node"])
        executing = _gauge("queue_executing", "Jobs a node is running in a queue.", ["queue", "node"])
        paused = _gauge("queue_paused", "1 when a node has paused a queue.", ["queue", "node"])
        for queue in overview.queues:
            for state, count in queue.counts.items():
                jobs.add_metric([queue.queue, state], count)
        for state in sorted({state for queue in overview.queues for state in queue.counts}):
            estimated.add_metric([state], float(state in overview.estimated))
        for node in overview.alive:
            for name, runs in node.queues.items():
                limit.add_metric([name, node.name], float(runs.get("limit", 0)))
                executing.add_metric([name, node.name], float(runs.get("running", 0)))
                paused.add_metric([name, node.name], float(bool(runs.get("paused"))))
        yield from (jobs, estimated, limit, executing, paused)
        yield from self._nodes(overview.nodes)

    def _nodes(self, nodes: list[NodeInfo]) -> Iterator[Metric]:
        now = datetime.now(UTC)
        age = _gauge("node_heartbeat_age_seconds", "Seconds since a node's last heartbeat.", ["node"])
        alive = _gauge("node_alive", "1 while a node's heartbeat is current.", ["node"])
        leader = _gauge("node_leader", "1 for the node holding the leader lease.", ["node"])
        for node in nodes:
            age.add_metric([node.name], (now - node.heartbeat_at).total_seconds())
            alive.add_metric([node.name], float(node.alive))
            leader.add_metric([node.name], float(node.leader))
        yield from (age, alive, leader)

    def _throughput(self) -> Iterator[Metric]:
        minutes = self.insights.throughput(2)
        finished = _gauge(
            "jobs_finished_last_minute", "Jobs finished in the last whole minute, by outcome.", ["outcome"]
        )
        last = minutes[0]
        finished.add_metric(["completed"], last.completed)
        finished.add_metric(["discarded"], last.discarded)
        yield finished

    def _assets(self) -> Iterator[Metric]:
        partitions = _gauge(
            "asset_partitions",
            "Partitions of an asset by status (fresh, stale, missing, queued, running, failed, cancelled).",
            ["asset", "status"],
        )
        overdue = _gauge(
            "asset_overdue",
            "1 when an asset's latest success is older than its freshness policy allows (assets with one).",
            ["asset"],
        )
        for overview in self.insights.assets():
            for status, count in overview.counts.items():
                partitions.add_metric([overview.asset.name, status], count)
            if overview.freshness is not None:
                overdue.add_metric([overview.asset.name], int(overview.overdue))
        yield partitions
        yield overdue


def registry_for(insights: Insights) -> CollectorRegistry:
    """A registry holding only FlowStone's collector (no process metrics of this server)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FlowStoneCollector(insights))
    return registry


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Scrapes are not logged line by line."""


def serve(insights: Insights, host: str, port: int) -> None:
    """Serve `/metrics` on host:port until interrupted (`flowstone metrics`)."""
    app = make_wsgi_app(registry_for(insights))
    with make_server(host, port, app, handler_class=_Quiet) as server:
        server.serve_forever()
