"""Periodic plugins a node runs: the stager on every node; lifeline, pruner and cron on
the leader only. Each is a `Plugin`: a name, an interval and one `tick`."""

from flowstone.queue.plugins.base import Plugin
from flowstone.queue.plugins.cron import Cron, CronEntry
from flowstone.queue.plugins.lifeline import Lifeline
from flowstone.queue.plugins.pruner import Pruner
from flowstone.queue.plugins.stager import Stager

__all__ = ["Cron", "CronEntry", "Lifeline", "Plugin", "Pruner", "Stager"]
