"""The lifeline: rescue jobs left `executing` by nodes whose heartbeat stopped."""

from __future__ import annotations

import structlog

from flowstone.queue import telemetry
from flowstone.queue.engine import rescue_plan
from flowstone.queue.plan import single
from flowstone.queue.plugins.base import PluginRuntime

_log = structlog.get_logger("flowstone.lifeline")


class Lifeline:
    """Leader only: by heartbeat, not by age — a long job on a live node is left alone.

    A node that was itself cut off from the database rescues nothing until it has been
    connected again for one expiry: after an outage the other nodes need that long to
    heartbeat again, and their jobs are still theirs."""

    name = "lifeline"
    leader_only = True

    def __init__(self, interval: float, expiry: float, limit: int = 5000) -> None:
        self.interval = interval
        self.expiry = expiry
        self.limit = limit

    async def tick(self, runtime: PluginRuntime) -> None:
        """Rescue the orphans of dead nodes, then forget those nodes."""
        if runtime.connected_for < self.expiry:
            return
        nodes = await runtime.execute(single(runtime.nodes.live_nodes, {"expiry": self.expiry}))
        alive = [key for row in nodes if row["alive"] for key in _keys(row["name"], row["incarnation"])]
        rescued = await runtime.execute(rescue_plan(runtime.jobs, alive, self.expiry, self.limit))
        await runtime.execute(single(runtime.nodes.expire_nodes, {"expiry": self.expiry * 6}))
        if rescued:
            _log.warning("rescued orphaned jobs", count=len(rescued))
            for queue in {row["queue"] for row in rescued}:
                runtime.wake(queue)
            telemetry.emit("lifeline.rescue", {"count": len(rescued)}, {"jobs": rescued})


def _keys(name: str, incarnation: str) -> tuple[str, str]:
    """How a live node's jobs are matched: by name and incarnation, and by name alone for
    jobs claimed before nodes had incarnations."""
    return f"{name}/{incarnation}", f"{name}/*"
