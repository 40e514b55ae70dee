"""A node: one process's producers plus its listener, heartbeat and plugins.

Life cycle: register (heartbeat) → listen → produce; on stop: stop claiming, wait the
grace period, hand unfinished jobs back (attempt refunded), write every outcome,
resign leadership and deregister. No job is left `executing`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from psycopg.types.json import Jsonb

from flowstone.queue import telemetry
from flowstone.queue.plan import single
from flowstone.queue.plugins import Cron, CronEntry, Lifeline, Plugin, Pruner, Stager
from flowstone.queue.plugins.cron import entries_from
from flowstone.queue.queries.nodes import NodeQueries
from flowstone.queue.runtime.listener import Listener
from flowstone.queue.runtime.producer import Producer
from flowstone.queue.runtime.retry import TRANSIENT, until_done

if TYPE_CHECKING:
    from flowstone.queue.instance import FlowStone

_log = structlog.get_logger("flowstone.node")


class Node:
    """Runs the configured queues of `fs` until `stop()`; see `FlowStone.run`/`start`."""

    def __init__(
        self,
        fs: FlowStone,
        queues: dict[str, int] | None = None,
        cron: Sequence[CronEntry] = (),
    ) -> None:
        self.fs = fs
        self.name = fs.settings.node
        self.node_queries = NodeQueries.for_schema(fs.schema)
        limits = queues if queues is not None else fs.settings.queues
        self.producers = {queue: Producer(self, queue, limit) for queue, limit in limits.items()}
        self.is_leader = False
        self.plugins: list[Plugin] = [
            Stager(fs.settings.stage_interval),
            Lifeline(fs.settings.lifeline_interval),
            Pruner(fs.settings.prune_interval, fs.settings.prune_max_age, fs.settings.prune_limit),
            Cron([*entries_from(fs.registry), *cron]),
        ]
        self.started = anyio.Event()
        self.stopped = anyio.Event()
        self._stop = anyio.Event()

    # -- signals from the listener -------------------------------------------------------

    def wake(self, queue: str) -> None:
        """A job became available in `queue`."""
        producer = self.producers.get(queue)
        if producer is not None:
            producer.wake()

    def _on_control(self, payload: str) -> None:
        try:
            signal = json.loads(payload)
        except ValueError:
            _log.warning("ignored a malformed control signal", payload=payload)
            return
        if signal.get("node", "*") not in ("*", self.name):
            return
        action = signal.get("action")
        if action == "cancel":
            for producer in self.producers.values():
                producer.cancel_job(int(signal["job_id"]), "cancel")
        elif action in ("pause", "resume", "scale"):
            self._apply_control(signal["queue"], signal.get("paused"), signal.get("limit"))

    def _apply_control(self, queue: str, paused: bool | None, limit: int | None) -> None:
        producer = self.producers.get(queue)
        if producer is None:
            return
        if paused is not None:
            producer.pause(bool(paused))
        if limit is not None:
            producer.scale(int(limit))

    def _on_connect(self) -> None:
        """After (re)connecting: fetch everywhere, and re-read controls we may have missed."""
        for producer in self.producers.values():
            producer.wake()
        self._reload_controls.set()

    # -- life cycle ------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until `stop()` is called (or the surrounding scope is cancelled)."""
        self._reload_controls = anyio.Event()
        await until_done(self._heartbeat, "register node")
        await self._load_controls()
        listener = Listener(
            self.fs,
            {self.fs.queries.channel: self.wake, self.node_queries.control_channel: self._on_control},
            self._on_connect,
        )
        async with anyio.create_task_group() as services:
            services.start_soon(listener.run)
            services.start_soon(self._heartbeat_loop)
            services.start_soon(self._controls_loop)
            for plugin in self.plugins:
                services.start_soon(self._plugin_loop, plugin)
            async with anyio.create_task_group() as jobs:
                for producer in self.producers.values():
                    jobs.start_soon(producer.run)
                with anyio.move_on_after(5):
                    await listener.connected.wait()
                self.started.set()
                _log.info("node started", node=self.name, queues=self._queue_limits())
                await self._stop.wait()
                await self._shutdown()
            await self._deregister()
            services.cancel_scope.cancel()
        self.stopped.set()
        _log.info("node stopped", node=self.name)

    def stop(self) -> None:
        """Begin a graceful shutdown (idempotent)."""
        self._stop.set()

    async def _shutdown(self) -> None:
        grace = self.fs.settings.shutdown_grace
        async with anyio.create_task_group() as stopping:
            for producer in self.producers.values():
                stopping.start_soon(producer.stop, grace)

    async def _deregister(self) -> None:
        with anyio.move_on_after(5):
            try:
                await self.fs.aexecute(single(self.node_queries.resign, {"node": self.name}))
                await self.fs.aexecute(single(self.node_queries.forget, {"node": self.name}))
            except TRANSIENT as error:
                _log.warning("could not deregister node", error=str(error))

    # -- periodic work ----------------------------------------------------------------------

    def _queue_limits(self) -> dict[str, Any]:
        return {
            queue: {"limit": p.limit, "paused": p.paused, "running": len(p.running)}
            for queue, p in self.producers.items()
        }

    async def _heartbeat(self) -> None:
        params = {"node": self.name, "queues": Jsonb(self._queue_limits())}
        await self.fs.aexecute(single(self.node_queries.heartbeat, params))
        lease = {"node": self.name, "lease": self.fs.settings.leader_lease}
        leading = bool(await self.fs.aexecute(single(self.node_queries.elect, lease)))
        if leading != self.is_leader:
            self.is_leader = leading
            telemetry.emit("leader.elected" if leading else "leader.lost", {}, {"node": self.name})
            _log.info("leadership changed", node=self.name, leader=leading)

    async def _heartbeat_loop(self) -> None:
        while True:
            await anyio.sleep(self.fs.settings.heartbeat_interval)
            try:
                await self._heartbeat()
            except TRANSIENT as error:
                self.is_leader = False
                _log.warning("heartbeat failed", error=str(error))

    async def _load_controls(self) -> None:
        rows = await until_done(
            lambda: self.fs.aexecute(single(self.node_queries.controls_for, {"node": self.name})),
            "load queue controls",
        )
        for row in rows:
            paused = row["node_paused"] if row["node_paused"] is not None else row["all_paused"]
            limit = row["node_limit"] if row["node_limit"] is not None else row["all_limit"]
            self._apply_control(row["queue"], paused, limit)

    async def _controls_loop(self) -> None:
        while True:
            await self._reload_controls.wait()
            self._reload_controls = anyio.Event()
            await self._load_controls()

    async def _plugin_loop(self, plugin: Plugin) -> None:
        while True:
            if self.is_leader or not plugin.leader_only:
                try:
                    await plugin.tick(self)
                except TRANSIENT as error:
                    _log.warning("plugin tick failed", plugin=plugin.name, error=str(error))
                except Exception:
                    _log.exception("plugin tick crashed", plugin=plugin.name)
            await anyio.sleep(plugin.interval)
