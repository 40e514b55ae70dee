"""The queue's commands: migrate, worker, jobs (ls, show, retry, cancel, delete, and in
bulk: cancel-all, retry-all, delete-all; tail), workflows (show, retry) and queues."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from flowstone.cli.common import Commands, UsageError, app_of, cell, emit, emit_one
from flowstone.cli.tail import add_tail
from flowstone.insights import SAMPLE_CAP, ClusterOverview, Insights, QueueOverview, WorkflowState
from flowstone.logs import configure_logging
from flowstone.queue import config
from flowstone.queue.connecting import probe_patiently
from flowstone.queue.control import QueueControl
from flowstone.queue.instance import FlowStone
from flowstone.queue.job import Job, JobState
from flowstone.queue.migrate import current_revision


def add_commands(commands: Commands) -> None:
    """Add the queue commands to `flowstone`'s command tree."""
    commands.add("migrate", "create or upgrade the schema", cmd_migrate)

    worker = commands.add("worker", "run a node until SIGTERM/SIGINT", cmd_worker)
    worker.add_argument("--queues", help="queues to run with limits: assets=10,default=5")
    worker.add_argument("--node", help="node name (default host.pid)")
    worker.add_argument("--log-format", choices=["console", "json"], default="console")
    worker.add_argument("--log-level", default="info")
    worker.add_argument(
        "--chaos",
        type=float,
        metavar="RATE",
        help="fail this share of jobs (0 to 1) before perform, to rehearse failures (FLOWSTONE_CHAOS)",
    )
    worker.add_argument(
        "--chaos-seed", type=int, metavar="N", help="seed the chaos draws (FLOWSTONE_CHAOS_SEED)"
    )
    worker.add_argument(
        "--wait-for-database",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for a server that is unreachable, starting or out of connections (default 60)",
    )

    jobs = commands.group("jobs", "inspect and steer jobs")
    ls = commands.add("ls", "list jobs, newest first", cmd_jobs_ls, jobs)
    ls.add_argument("--queue")
    ls.add_argument("--state", choices=[s.value for s in JobState])
    ls.add_argument("--worker")
    ls.add_argument("--tag")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--before", type=int, metavar="ID", help="only jobs older than job ID (the next page)")
    actions: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
        "show": (cmd_jobs_show, "show one job"),
        "retry": (_job_action(FlowStone.retry_job, "retried"), "run a job again now"),
        "cancel": (_job_action(FlowStone.cancel_job, "cancelled"), "cancel a job (even executing)"),
    }
    for name, (command, text) in actions.items():
        commands.add(name, text, command, jobs).add_argument("id", type=int)
    commands.add("delete", "delete a job that is not executing", cmd_jobs_delete, jobs).add_argument(
        "id", type=int
    )
    _add_bulk_commands(commands, jobs)
    add_tail(commands, jobs)

    workflows = commands.group("workflows", "inspect and retry workflows and batches")
    commands.add(
        "show", "a workflow's (or batch's) jobs and states", cmd_workflow_show, workflows
    ).add_argument("id")
    commands.add(
        "retry",
        "retry a workflow's failed and cancelled jobs in dependency order",
        cmd_workflow_retry,
        workflows,
    ).add_argument("id")

    queues = commands.add(
        "queues", "per-queue counts and limits; pause, resume, scale or reset a queue", cmd_queues
    )
    steer = queues.add_subparsers(dest="action")
    for name in ("pause", "resume", "scale"):
        action = commands.add(
            name, f"{name} a queue on one node or all (stored until reset)", _queue_action, steer
        )
        action.add_argument("queue")
        if name == "scale":
            action.add_argument("limit", type=int)
        action.add_argument("--node", help="only this node (default: all)")
        action.add_argument(
            "--force", action="store_true", help="store the setting for a queue or node not seen yet"
        )
    reset = commands.add(
        "reset",
        "clear a queue's stored pause/scale settings: back to what nodes are configured with",
        cmd_reset,
        steer,
    )
    reset.add_argument("queue")
    reset.add_argument("--node", help="only this node's own settings (default: every node's and all nodes')")


def parse_queues(text: str) -> dict[str, int]:
    """`assets=10,default=5` → {"assets": 10, "default": 5}."""
    try:
        return config.parse_queues(text)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _with_options(app: FlowStone, limits: dict[str, int]) -> dict[str, Any]:
    """`--queues` limits, keeping the other options (global and rate limits) the app
    configures for those queues."""
    configured = app.settings.queues
    return {
        name: configured[name].model_copy(update={"limit": limit}) if name in configured else limit
        for name, limit in limits.items()
    }


def _known_queues(app: FlowStone) -> set[str]:
    known = set(app.settings.queues)
    for name in app.registry.names():
        worker = app.registry.get(name)
        if worker is not None:
            known.add(worker.queue)
    return known


def cmd_worker(args: argparse.Namespace) -> int:
    """Run a node until SIGTERM/SIGINT (logging is set up once the input is known good)."""
    app = app_of(args)
    queues: dict[str, Any] = (
        _with_options(app, parse_queues(args.queues)) if args.queues else dict(app.settings.queues)
    )
    if not queues:
        raise UsageError("no queues to run: pass --queues name=limit,… or configure queues on the app")
    unknown = sorted(set(queues) - _known_queues(app))
    if unknown:
        known = ", ".join(sorted(_known_queues(app))) or "none"
        raise UsageError(f"unknown queue(s) {', '.join(unknown)} (known: {known})")
    if args.node:
        app.override(node=args.node)
    _override_chaos(app, args)
    if not args.wait_for_database >= 0:
        raise UsageError(f"--wait-for-database must be 0 or more seconds; got {args.wait_for_database}")
    app.node(queues)  # validates cron entries before anything runs
    configure_logging(args.log_format, args.log_level)
    probe_patiently(app.database_url, app.settings.connect_timeout, args.wait_for_database)
    _require_migrated(app)
    app.run(queues)
    _exit_past_lingering_threads()
    return 0


def _override_chaos(app: FlowStone, args: argparse.Namespace) -> None:
    """`--chaos` and `--chaos-seed` over the app's (and the environment's) settings."""
    if args.chaos is not None and not 0 <= args.chaos <= 1:
        raise UsageError(f"--chaos must be a share of jobs from 0 to 1 (0.3 fails 30 %); got {args.chaos}")
    given = {"chaos": args.chaos, "chaos_seed": args.chaos_seed}
    if any(value is not None for value in given.values()):
        app.override(**{name: value for name, value in given.items() if value is not None})


def _exit_past_lingering_threads() -> None:
    """The node has stopped and written every outcome it could. A thread still running
    (one the job itself started and cannot be stopped) would keep the process alive past
    its grace period: exit now; the lifeline rescues what such a thread was doing."""
    main = threading.main_thread()
    if any(t.is_alive() and not t.daemon and t is not main for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _require_migrated(app: FlowStone) -> None:
    if current_revision(app.database_url, app.schema) is None:
        raise UsageError(f"schema {app.schema!r} is not migrated; run `flowstone migrate` first")


def cmd_migrate(args: argparse.Namespace) -> int:
    """Bring the schema up to date."""
    app = app_of(args)
    previous = current_revision(app.database_url, app.schema)
    app.migrate()  # through direct_url when given
    revision = current_revision(app.database_url, app.schema)
    if args.json:
        emit([{"schema": app.schema, "previous": previous, "revision": revision}], True)
    else:
        print(f"schema {app.schema!r} is at revision {revision}")
    return 0


def _job_summary(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "state": job.state.value,
        "queue": job.queue,
        "worker": job.worker,
        "attempt": f"{job.attempt}/{job.max_attempts}",
        "scheduled_at": job.scheduled_at,
        "args": json.dumps(job.args)[:60],
    }


def cmd_jobs_ls(args: argparse.Namespace) -> int:
    """List jobs, newest first, a page at a time."""
    page = Insights(app_of(args)).jobs(
        queue=args.queue,
        state=args.state,
        worker=args.worker,
        tag=args.tag,
        cursor=args.before,
        limit=args.limit,
    )
    rows = [job.to_dict() for job in page.jobs] if args.json else [_job_summary(job) for job in page.jobs]
    emit(rows, args.json)
    if page.next_cursor is not None and not args.json:
        print(f"(more: --before {page.next_cursor})")
    return 0


def cmd_jobs_show(args: argparse.Namespace) -> int:
    """Show one job in full."""
    job = Insights(app_of(args)).job(args.id)
    if job is None:
        raise UsageError(f"no job with id {args.id}")
    emit_one(job.to_dict(), args.json)
    return 0


def _job_action(
    action: Callable[[FlowStone, int], Job | None], verb: str
) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        job = action(app_of(args), args.id)
        if job is None:
            raise UsageError(
                f"job {args.id} cannot be {verb} (missing, or in a state that does not allow it)"
            )
        emit([_job_summary(job)], args.json)
        return 0

    return command


def cmd_jobs_delete(args: argparse.Namespace) -> int:
    """Delete one job that is not executing (cancel an executing one first)."""
    if not app_of(args).delete_job(args.id):
        raise UsageError(f"job {args.id} cannot be deleted (missing, or executing: cancel it first)")
    if args.json:
        emit([{"id": args.id, "deleted": True}], True)
    else:
        print(f"deleted job {args.id}")
    return 0


BULK = {
    "cancel-all": ("cancel", "cancel unfinished jobs matching the filters"),
    "retry-all": ("retry", "retry scheduled, retryable or finished jobs matching the filters"),
    "delete-all": ("delete", "delete jobs matching the filters (never executing ones)"),
}


def _add_bulk_commands(commands: Commands, jobs: Any) -> None:
    for name, (action, text) in BULK.items():
        bulk = commands.add(name, text, _bulk_action(action), jobs)
        bulk.add_argument("--queue")
        bulk.add_argument("--state", choices=[s.value for s in JobState])
        bulk.add_argument("--worker")
        bulk.add_argument("--tag")
        bulk.add_argument("--args", help="args containing this JSON object, e.g. '{\"tenant\": 7}'")
        bulk.add_argument("--all", action="store_true", help="act on every job (when no filter is given)")
        bulk.add_argument("--dry-run", action="store_true", help="only count the jobs it would act on")
        bulk.add_argument("--batch-size", type=int, default=1000, help="jobs per transaction (default 1000)")
        if action == "cancel":
            bulk.add_argument("--reason", help="recorded in each job's errors")


def _bulk_action(action: str) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        where = _bulk_filter(args, action)
        app = app_of(args)
        options = {"dry_run": args.dry_run, "batch_size": args.batch_size, "all": args.all, **where}
        if action == "cancel":
            count = app.cancel_all_jobs(reason=args.reason, **options)
        elif action == "retry":
            count = app.retry_all_jobs(**options)
        else:
            count = app.delete_all_jobs(**options)
        verb = {"cancel": "cancelled", "retry": "retried", "delete": "deleted"}[action]
        if args.json:
            emit([{"action": action, "dry_run": args.dry_run, "count": count, **where}], True)
        else:
            print(f"{count} job(s) {'would be ' if args.dry_run else ''}{verb}")
        return 0

    return command


def _bulk_filter(args: argparse.Namespace, action: str) -> dict[str, Any]:
    """The filters given to a bulk command. A filter given is a filter: an empty value
    (what a shell passes for an unset variable) is refused, and no filter at all needs
    --all, so nothing widens to every job by accident."""
    where = {key: getattr(args, key) for key in ("queue", "state", "worker", "tag", "args")}
    where = {key: value for key, value in where.items() if value is not None}
    for key, value in where.items():
        if not value.strip():
            raise UsageError(f"--{key} is empty (an unset shell variable?): give a value, or leave it out")
    if "args" in where:
        where["args"] = _json_object(where["args"])
    if args.all and where:
        raise UsageError(f"give filters or --all, not both (filters: {', '.join(sorted(where))})")
    if not args.all and not where:
        raise UsageError(f"jobs {action}-all with no filter would act on every job: give a filter, or --all")
    return where


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"--args must be a JSON object: {error}") from None
    if not isinstance(value, dict):
        raise UsageError(f"--args must be a JSON object; got {text!r}")
    return value


def cmd_workflow_show(args: argparse.Namespace) -> int:
    """A workflow's jobs in insertion order: name, state, what each waits on, progress."""
    state = Insights(app_of(args)).workflow(args.id)
    if state is None:
        raise UsageError(f"no workflow or batch with id {args.id!r}")
    if args.json:
        emit_one({"id": state.id, "counts": state.counts, "done": state.done, "jobs": _members(state)}, True)
        return 0
    emit(_members(state), False)
    batch = state.batch
    summary = f"workflow {state.id}: {json.dumps(state.counts)}; {'done' if state.done else 'running'}"
    if batch is not None:
        callback = "-" if batch.callback is None else batch.callback.state.value
        summary += f"; batch of {batch.total}: {json.dumps(batch.counts)}, callback {callback}"
    print(summary)
    return 0


def cmd_workflow_retry(args: argparse.Namespace) -> int:
    """Retry every discarded and cancelled job of a workflow; print the jobs changed."""
    app = app_of(args)
    changed = app.retry_workflow(args.id)
    if not changed and app.workflow(args.id) is None:
        raise UsageError(f"no workflow or batch with id {args.id!r}")
    emit([_job_summary(job) for job in changed], args.json)
    return 0


def _members(state: WorkflowState) -> list[dict[str, Any]]:
    return [
        {
            "name": member.name,
            "id": member.job.id,
            "state": member.job.state.value,
            "deps": ",".join(member.deps) or "-",
            "waiting_on": member.waiting_on,
            "progress": _progress(member.job),
        }
        for member in state.jobs
    ]


def _progress(job: Job) -> str | None:
    report = job.progress_report
    if not report:
        return None
    message = f" {report['message']}" if report.get("message") else ""
    return f"{report['fraction']:.0%}{message}"


def _queue_row(queue: QueueOverview, overview: ClusterOverview, as_json: bool) -> dict[str, Any]:
    row = {
        "queue": queue.queue,
        **queue.counts,
        "paused_on": queue.paused_on,
        "nodes": queue.nodes,
        "limit": queue.limit,
        "configured": queue.configured_limit,
    }
    if as_json:
        row["overrides"] = [asdict(control) for control in overview.overrides(queue.queue)]
    return row


def _control_text(control: QueueControl) -> str:
    """`limit 2, paused on all nodes`: what a stored setting sets, and for whom."""
    what = [] if control.limit is None else [f"limit {control.limit}"]
    what += [] if control.paused is None else ["paused" if control.paused else "resumed"]
    whom = "all nodes" if control.node == "*" else f"node {control.node}"
    return f"{', '.join(what) or 'nothing'} on {whom}"


def cmd_queues(args: argparse.Namespace) -> int:
    """Per-queue counts by state, paused or not, the nodes alive, their limits now and as
    configured, and the stored settings that override them."""
    overview = Insights(app_of(args)).overview()
    emit([_queue_row(queue, overview, args.json) for queue in overview.queues], args.json)
    if args.json:
        return 0
    print(f"leader: {overview.leader or '-'}; nodes alive: {len(overview.alive)}")
    if overview.estimated:
        print(f"estimated (over {SAMPLE_CAP:,} jobs): {', '.join(sorted(overview.estimated))}")
    if overview.controls:
        print("stored settings, overriding what nodes are configured with (`flowstone queues reset QUEUE`):")
        for control in overview.controls:
            print(f"  {control.queue}: {_control_text(control)} (since {cell(control.updated_at)})")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    """Clear a queue's stored settings (every node's, or one node's own)."""
    cleared = app_of(args).reset_queue(args.queue, node=args.node)
    if args.json:
        cleared_rows = [asdict(control) for control in cleared]
        emit_one(
            {"action": "reset", "queue": args.queue, "node": args.node or "*", "cleared": cleared_rows}, True
        )
        return 0
    where = f"node {args.node}" if args.node else "all nodes"
    if not cleared:
        print(f"nothing was stored for {args.queue} on {where}")
        return 0
    print(f"reset {args.queue} on {where}: cleared {'; '.join(_control_text(c) for c in cleared)}")
    return 0


def _check_target(app: FlowStone, queue: str, node: str | None) -> None:
    """Refuse a queue (or node) nobody knows: likely a typo that would silently do nothing."""
    overview = Insights(app).overview()
    queues = _known_queues(app) | {q.queue for q in overview.queues}
    nodes = {n.name for n in overview.nodes}
    later = "; pass --force to store the setting for when it appears"
    if queue not in queues:
        known = ", ".join(sorted(queues)) or "none"
        raise UsageError(
            f"unknown queue {queue!r}: no job is in it and no node runs it (known: {known}){later}"
        )
    if node is not None and node not in nodes:
        known = ", ".join(sorted(nodes)) or "none"
        raise UsageError(f"unknown node {node!r} (nodes: {known}){later}")


def _queue_action(args: argparse.Namespace) -> int:
    app = app_of(args)
    if not args.force:
        _check_target(app, args.queue, args.node)
    if args.action == "pause":
        app.pause_queue(args.queue, node=args.node)
    elif args.action == "resume":
        app.resume_queue(args.queue, node=args.node)
    else:
        app.scale_queue(args.queue, args.limit, node=args.node)
    if args.json:
        limit = {"limit": args.limit} if args.action == "scale" else {}
        emit([{"action": args.action, "queue": args.queue, "node": args.node or "*", **limit}], True)
    else:
        print(f"{args.action} {args.queue} on {args.node or 'all nodes'}")
    return 0
