"""A node: one process's producers plus its listener, heartbeat and plugins.

Life cycle: register (heartbeat) → listen → produce; on stop: stop claiming, wait the
grace period, hand unfinished jobs back (attempt refunded), write every outcome,
resign leadership and deregister. No job is left `executing`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import psycopg
import psycopg.errors
import structlog
from psycopg.types.json import Jsonb

from flowstone.queue import executor, telemetry
from flowstone.queue.config import QueuesOption, Settings, queue_configs
from flowstone.queue.control import parse_signal
from flowstone.queue.floor import BOTTOM, parse_notification
from flowstone.queue.plan import Row, single
from flowstone.queue.plugins import CronEntry, Plugin, builtin_plugins
from flowstone.queue.plugins.base import InstanceRuntime
from flowstone.queue.plugins.cron import entries_from
from flowstone.queue.runtime.link import Link
from flowstone.queue.runtime.listener import Listener, Poller
from flowstone.queue.runtime.producer import Producer
from flowstone.queue.runtime.progress import ProgressWriter
from flowstone.queue.runtime.reconnect import TRANSIENT, until_done

if TYPE_CHECKING:
    from flowstone.queue.instance import FlowStone

T = TypeVar("T")

_log = structlog.get_logger("flowstone.node")


class Node(InstanceRuntime):
    """Runs the configured queues of `fs` until `stop()`; see `FlowStone.run`/`start`."""

    def __init__(
        self,
        fs: FlowStone,
        queues: QueuesOption | None = None,
        cron: Sequence[CronEntry] = (),
        plugins: Sequence[Plugin] = (),
    ) -> None:
        self.fs = fs
        self.progress = ProgressWriter(fs)
        configs = queue_configs(queues) if queues is not None else fs.settings.queues
        manual = fs.settings.testing == "manual"  # jobs run only when a test drains them
        self.producers = {
            queue: Producer(self, queue, config) for queue, config in configs.items() if not manual
        }
        workers = [w for w in map(fs.registry.get, fs.registry.names()) if w is not None]
        for producer in self.producers.values():
            producer.processes.check(workers)
        self.incarnation = uuid.uuid4().hex[:12]
        self.link = Link(fs, "flowstone.node")
        self.is_leader = False
        self._connected_since: float | None = None
        entries = [*entries_from(fs.registry), *cron]
        self.plugins: list[Plugin] = (
            [] if manual else [*builtin_plugins(fs.settings, entries, fs.registry), *plugins]
        )
        self.started = anyio.Event()
        self.stopped = anyio.Event()
        self._stop = anyio.Event()

    # -- what plugins see of the node (PluginRuntime) ---------------------------------------

    @property
    def name(self) -> str:
        """This node's name (in `attempted_by` and the nodes table)."""
        return self.settings.node

    @property
    def claimer(self) -> list[str]:
        """What claimed jobs record in `attempted_by`: this node's name and incarnation."""
        return [self.name, self.incarnation]

    @property
    def connected_for(self) -> float:
        """Seconds since this node's heartbeat began succeeding without a break."""
        if self._connected_since is None:
            return 0.0
        return time.monotonic() - self._connected_since

    # -- signals from the listener -------------------------------------------------------

    def wake(self, queue: str) -> None:
        """A job became available in `queue`."""
        producer = self.producers.get(queue)
        if producer is not None:
            producer.wake()

    def _on_available(self, payload: str) -> None:
        """A job became available (notified, with its claim key when the payload has one)."""
        queue, key = parse_notification(payload)
        producer = self.producers.get(queue)
        if producer is not None:
            producer.available(key)

    def _on_control(self, payload: str) -> None:
        """Apply a control signal; one that does not parse is logged and ignored (any
        database role can NOTIFY: a malformed payload must not take the node down)."""
        try:
            signal = parse_signal(payload)
        except ValueError as error:
            _log.warning("ignored a malformed control signal", payload=payload[:200], error=str(error)[:200])
            return
        if not signal.for_node(self.name):
            return
        if signal.action == "cancel":
            assert signal.job_id is not None
            for producer in self.producers.values():
                producer.cancel_job(signal.job_id, "cancel")
        elif signal.action == "reset":
            assert signal.queue is not None
            self._reset(signal.queue)
        else:
            assert signal.queue is not None
            self._apply_control(signal.queue, signal.paused, signal.limit)

    def _apply_control(self, queue: str, paused: bool | None, limit: int | None) -> None:
        """Apply a stored or signalled queue setting (unknown queues are not ours to run)."""
        producer = self.producers.get(queue)
        if producer is None:
            return
        if paused is not None:
            producer.pause(bool(paused))
        if limit is not None:
            producer.scale(int(limit))

    def _reset(self, queue: str) -> None:
        """A queue's stored settings were cleared: back to its configured ones, then to
        what is still stored for this node (a cluster-wide setting after a node's reset)."""
        producer = self.producers.get(queue)
        if producer is None:
            return
        producer.pause(producer.config.paused)
        producer.scale(producer.config.limit)
        _log.info("queue reset to its configured settings", node=self.name, queue=queue)
        self._reload_controls.set()

    def _on_connect(self) -> None:
        """After (re)connecting: fetch everywhere from the head of the claim index (jobs
        may have become available unannounced), and re-read controls we may have missed."""
        for producer in self.producers.values():
            producer.available(BOTTOM)
        self._reload_controls.set()

    def _listener(self) -> Listener | Poller:
        """What tells the node of inserts, controls and cancels: a LISTEN where a
        connection keeps one (see `FlowStone.sessions`), else polling."""
        if not self.fs.sessions:
            return Poller(self.settings.poll_interval, self._poll)
        handlers = {self.jobs.channel: self._on_available, self.nodes.control_channel: self._on_control}
        return Listener(self.fs, handlers, self._on_connect)

    async def _poll(self) -> None:
        """What notifications would have said: the stored controls, and which running jobs
        were cancelled (they are interrupted as a cancel signal would)."""
        self._reload_controls.set()
        running = [job_id for producer in self.producers.values() for job_id in producer.running]
        if not running:
            return
        for row in await self.link.execute(single(self.jobs.cancelled_among, {"ids": running})):
            for producer in self.producers.values():
                producer.cancel_job(row["id"], "cancel")

    # -- life cycle ------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until `stop()` is called (or the surrounding scope is cancelled)."""
        self._reload_controls = anyio.Event()
        self._arm_chaos()
        await until_done(self._heartbeat, "register node")
        await self._load_controls()
        listener = self._listener()
        async with anyio.create_task_group() as services:
            services.start_soon(listener.run)
            services.start_soon(self._heartbeat_loop)
            services.start_soon(self._controls_loop)
            services.start_soon(self.progress.run)
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
        await self.link.close()
        self.stopped.set()
        _log.info("node stopped", node=self.name)

    def _arm_chaos(self) -> None:
        """With the `chaos` setting, fail that share of this node's jobs before perform (for
        the job tasks started from here on: they copy this context)."""
        rate = self.settings.chaos
        if rate > 0:
            _log.warning(
                "chaos: failing a share of jobs before perform", rate=rate, seed=self.settings.chaos_seed
            )
            executor.arm_chaos(rate, self.settings.chaos_seed)

    def stop(self) -> None:
        """Begin a graceful shutdown; called again, skip what is left of the grace period."""
        if self._stop.is_set():
            for producer in self.producers.values():
                producer.force()
        self._stop.set()

    async def _shutdown(self) -> None:
        grace = self.settings.shutdown_grace
        async with anyio.create_task_group() as stopping:
            for producer in self.producers.values():
                stopping.start_soon(producer.stop, grace)

    async def _deregister(self) -> None:
        """Resign leadership and leave the nodes table, unless jobs were left behind: then
        the node's row stays until its heartbeat expires, so that the lifeline rescues them
        only once this process (and the threads running them) is gone."""
        left = {queue: p.left_behind for queue, p in self.producers.items() if p.left_behind}
        if left:
            _log.warning(
                "sync jobs still running at the end of the grace period stay executing; the lifeline "
                "rescues them once this node's heartbeat expires",
                node=self.name,
                jobs=left,
            )
        with anyio.move_on_after(5):
            try:
                await self.link.execute(single(self.nodes.resign, {"node": self.name}))
                if not left:
                    await self.link.execute(single(self.nodes.forget, self._identity()))
            except TRANSIENT as error:
                _log.warning("could not deregister node", error=str(error))

    def _identity(self) -> dict[str, str]:
        return {"node": self.name, "incarnation": self.incarnation}

    # -- periodic work ----------------------------------------------------------------------

    def _queue_limits(self) -> dict[str, Any]:
        """What the heartbeat publishes of each queue: its limit and paused state now and
        as configured (they differ while a stored setting overrides them), running jobs,
        and its cluster-wide limits."""
        return {
            queue: {
                "limit": p.limit,
                "paused": p.paused,
                "configured_limit": p.config.limit,
                "configured_paused": p.config.paused,
                "running": len(p.running),
                **p.config.model_dump(
                    mode="json", include={"global_limit", "rate_limit", "partition"}, exclude_none=True
                ),
            }
            for queue, p in self.producers.items()
        }

    async def _heartbeat(self) -> None:
        """Say this node is alive (if its producers are) and try to lead."""
        stalled = self._stalled()
        if stalled:
            _log.error("producers stalled; heartbeat withheld", node=self.name, queues=stalled)
            return
        params = {**self._identity(), "queues": Jsonb(self._queue_limits())}
        await self.link.execute(single(self.nodes.heartbeat, params))
        if self._connected_since is None:
            self._connected_since = time.monotonic()
        lease = {"node": self.name, "lease": self.settings.leader_lease}
        leading = bool(await self.link.execute(single(self.nodes.elect, lease)))
        if leading != self.is_leader:
            self.is_leader = leading
            telemetry.emit("leader.elected" if leading else "leader.lost", {}, {"node": self.name})
            _log.info("leadership changed", node=self.name, leader=leading)

    async def _heartbeat_loop(self) -> None:
        while True:
            await anyio.sleep(self.settings.heartbeat_interval)
            try:
                await self._heartbeat()
            except TRANSIENT as error:
                self.is_leader = False
                self._connected_since = None
                _log.warning("heartbeat failed", error=str(error))

    def _stalled(self) -> list[str]:
        """Queues whose producer loop has not turned for longer than it ever should: the
        heartbeat must not vouch for a node that cannot write its jobs' outcomes."""
        settings = self.settings
        limit = max(settings.node_expiry, settings.statement_timeout + 5 + settings.poll_interval) + 5
        now = time.monotonic()
        return [queue for queue, producer in self.producers.items() if now - producer.turned_at > limit]

    async def _load_controls(self) -> None:
        """Apply the stored settings (a node-specific one over the cluster-wide one); at
        start, say which replace a configured setting, and how to clear them."""
        rows = await until_done(
            lambda: self.link.execute(single(self.nodes.controls_for, {"node": self.name})),
            "load queue controls",
        )
        for row in rows:
            if not self.started.is_set():
                self._announce_override(row)
            paused = row["node_paused"] if row["node_paused"] is not None else row["all_paused"]
            limit = row["node_limit"] if row["node_limit"] is not None else row["all_limit"]
            self._apply_control(row["queue"], paused, limit)

    def _announce_override(self, row: Row) -> None:
        """Log the stored settings of a queue (row of `controls_for`) that replace what this
        node was configured with."""
        producer = self.producers.get(row["queue"])
        if producer is None:
            return
        replaced = {}
        for field, configured in (("limit", producer.config.limit), ("paused", producer.config.paused)):
            own, everyone = row[f"node_{field}"], row[f"all_{field}"]
            stored = own if own is not None else everyone
            if stored is not None and stored != configured:
                scope = "this node" if own is not None else "all nodes"
                replaced[field] = f"{stored} (configured {configured}; stored for {scope})"
        if replaced:
            _log.warning(
                "stored queue setting replaces the configured one (flowstone queues reset QUEUE clears it)",
                node=self.name,
                queue=row["queue"],
                **replaced,
            )

    async def _controls_loop(self) -> None:
        while True:
            await self._reload_controls.wait()
            self._reload_controls = anyio.Event()
            await self._load_controls()

    async def _plugin_loop(self, plugin: Plugin) -> None:
        failures = 0
        while True:
            if self.is_leader or not plugin.leader_only:
                try:
                    await plugin.tick(self)
                    failures = 0
                except (*TRANSIENT, TimeoutError) as error:
                    failures += 1
                    advice = _advice(plugin, error, failures, self.settings)
                    text = str(error) or "its statements outlasted statement_timeout + 5 s"
                    _log.warning(
                        "plugin tick failed", plugin=plugin.name, error=text, failures=failures, **advice
                    )
                except Exception:
                    failures += 1
                    _log.exception("plugin tick crashed", plugin=plugin.name, failures=failures)
            await anyio.sleep(plugin.interval)


KEEPS_FAILING = 3
"""Failed ticks in a row after which the log line says which setting to change."""

SLOW_FIXES = {"pruner": " or lower prune_limit", "lifeline": " or lower lifeline_limit"}
"""What else makes a built-in plugin's statements shorter."""


def _advice(plugin: Plugin, error: BaseException, failures: int, settings: Settings) -> dict[str, str]:
    """`fix=…` for a plugin that keeps failing on a timeout: the setting to change."""
    if failures < KEEPS_FAILING:
        return {}
    if isinstance(error, TimeoutError | psycopg.errors.QueryCanceled):
        limit, also = settings.statement_timeout, SLOW_FIXES.get(plugin.name, "")
        return {
            "fix": f"its statements take longer than allowed: raise statement_timeout ({limit:g} s){also}"
        }
    if isinstance(error, psycopg.errors.LockNotAvailable):
        return {"fix": "a lock_timeout of the database or role cancels its statements: raise or reset it"}
    return {}
