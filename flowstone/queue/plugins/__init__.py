"""Periodic plugins a node runs: the stager on every node; lifeline, pruner and cron on
the leader only. Each is a `Plugin`: a name, an interval and one `tick`, given the node's
narrow `PluginRuntime`. Users add their own with `FlowStone(plugins=[...])`."""

from __future__ import annotations

from collections.abc import Sequence

from flowstone.queue.config import Settings
from flowstone.queue.plugins.base import Plugin, PluginRuntime
from flowstone.queue.plugins.cron import Cron, CronEntry
from flowstone.queue.plugins.cursor import margin_for
from flowstone.queue.plugins.lifeline import Lifeline
from flowstone.queue.plugins.pruner import Pruner
from flowstone.queue.plugins.stager import Stager
from flowstone.queue.worker import WorkerRegistry


def builtin_plugins(
    settings: Settings, cron: Sequence[CronEntry], registry: WorkerRegistry | None = None
) -> list[Plugin]:
    """The plugins every node runs, configured from `settings`; with `registry`, cron runs
    the entries stored in the database too."""
    return [
        Stager(settings.stage_interval, margin_for(settings.statement_timeout)),
        Lifeline(settings.lifeline_interval, settings.node_expiry, settings.lifeline_limit),
        Pruner(
            settings.prune_interval,
            settings.prune_max_age,
            settings.prune_limit,
            settings.prune_budget,
            margin_for(settings.statement_timeout),
        ),
        Cron(cron, settings.cron_interval, registry),
    ]


__all__ = ["Cron", "CronEntry", "Lifeline", "Plugin", "PluginRuntime", "Pruner", "Stager", "builtin_plugins"]
