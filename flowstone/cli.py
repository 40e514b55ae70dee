"""`flowstone`: the operator's command line (migrate, worker, jobs, queues, assets).

Bad input — an app that cannot be imported, an unknown queue, a malformed limit, an
invalid cron expression — gets a one-line error and exit code 2 before any job runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import date, datetime
from typing import Any

import pydantic

from flowstone.assets.errors import FlowStoneError
from flowstone.logs import configure_logging
from flowstone.queue.instance import FlowStone, set_default
from flowstone.queue.job import Job, JobState
from flowstone.queue.migrate import current_revision, migrate

Command = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit code 2."""


def load_app(spec: str | None, database_url: str | None, schema: str | None) -> FlowStone:
    """The FlowStone named by `module:attr` (an instance or a factory), or a default one."""
    if spec is None:
        return FlowStone(database_url, schema=schema or "flowstone")
    app = _import_app(spec)
    overrides = {"database_url": database_url, "schema_name": schema}
    app.override(**{key: value for key, value in overrides.items() if value is not None})
    return app


def _import_app(spec: str) -> FlowStone:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"--app must look like 'module:attribute'; got {spec!r}")
    if "." not in sys.path:
        sys.path.insert(0, ".")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise UsageError(f"cannot import app module {module_name!r}: {error}") from error
    app = getattr(module, attr, None)
    if app is not None and not isinstance(app, FlowStone) and callable(app):
        app = app()
    if not isinstance(app, FlowStone):
        raise UsageError(f"{spec} is not a FlowStone instance (or a function returning one)")
    return app


def parse_queues(text: str) -> dict[str, int]:
    """`assets=10,default=5` → {"assets": 10, "default": 5}."""
    queues: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, limit = part.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--queues entry {part!r} must look like name=limit")
        if not limit.strip().isdigit() or int(limit) < 1:
            raise UsageError(f"--queues limit for {name.strip()!r} must be a positive integer; got {limit!r}")
        queues[name.strip()] = int(limit)
    if not queues:
        raise UsageError("--queues names no queue")
    return queues


def _known_queues(app: FlowStone) -> set[str]:
    known = set(app.settings.queues)
    for name in app.registry.names():
        worker = app.registry.get(name)
        if worker is not None:
            known.add(worker.queue)
    return known


def cmd_worker(args: argparse.Namespace) -> int:
    """Run a node until SIGTERM/SIGINT (logging is set up once the input is known good)."""
    app = _app(args)
    queues = parse_queues(args.queues) if args.queues else dict(app.settings.queues)
    if not queues:
        raise UsageError("no queues to run: pass --queues name=limit,… or configure queues on the app")
    unknown = sorted(set(queues) - _known_queues(app))
    if unknown:
        known = ", ".join(sorted(_known_queues(app))) or "none"
        raise UsageError(f"unknown queue(s) {', '.join(unknown)} (known: {known})")
    if args.node:
        app.override(node=args.node)
    app.node(queues)  # validates cron entries before anything runs
    _require_migrated(app)
    configure_logging(args.log_format, args.log_level)
    app.run(queues)
    return 0


def _require_migrated(app: FlowStone) -> None:
    if current_revision(app.database_url, app.schema) is None:
        raise UsageError(f"schema {app.schema!r} is not migrated; run `flowstone migrate` first")


def cmd_migrate(args: argparse.Namespace) -> int:
    """Bring the schema up to date."""
    app = _app(args)
    migrate(app.database_url, app.schema)
    print(f"schema {app.schema!r} is at revision {current_revision(app.database_url, app.schema)}")
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
    """List jobs, filtered."""
    app = _app(args)
    state = JobState(args.state) if args.state else None
    jobs = app.list_jobs(queue=args.queue, state=state, worker=args.worker, limit=args.limit)
    rows = [asdict(job) for job in jobs] if args.json else [_job_summary(job) for job in jobs]
    emit(rows, args.json)
    return 0


def cmd_jobs_show(args: argparse.Namespace) -> int:
    """Show one job in full."""
    job = _app(args).get_job(args.id)
    if job is None:
        raise UsageError(f"no job with id {args.id}")
    emit([asdict(job)], args.json, vertical=True)
    return 0


def _job_action(action: Callable[[FlowStone, int], Job | None], verb: str) -> Command:
    def command(args: argparse.Namespace) -> int:
        job = action(_app(args), args.id)
        if job is None:
            raise UsageError(
                f"job {args.id} cannot be {verb} (missing, or in a state that does not allow it)"
            )
        emit([_job_summary(job)], args.json)
        return 0

    return command


def cmd_queues(args: argparse.Namespace) -> int:
    """Per-queue counts by state, paused or not, and the nodes alive."""
    app = _app(args)
    counts = app.queue_counts()
    nodes = app.nodes()
    rows = []
    for queue in sorted(set(counts) | {q for n in nodes for q in n["queues"]}):
        running_on = [n for n in nodes if n["alive"] and queue in n["queues"]]
        row: dict[str, Any] = {"queue": queue}
        row.update({state.value: counts.get(queue, {}).get(state.value, 0) for state in JobState})
        row["paused_on"] = sum(1 for n in running_on if n["queues"][queue].get("paused"))
        row["nodes"] = len(running_on)
        rows.append(row)
    emit(rows, args.json)
    if not args.json:
        print(f"leader: {app.leader() or '-'}; nodes alive: {sum(1 for n in nodes if n['alive'])}")
    return 0


def _queue_action(args: argparse.Namespace) -> int:
    app = _app(args)
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


def emit(rows: Sequence[dict[str, Any]], as_json: bool, vertical: bool = False) -> None:
    """Print rows as JSON (one document) or as a table for people."""
    if as_json:
        print(json.dumps(list(rows), default=_json_default, indent=2))
        return
    if vertical:
        for row in rows:
            width = max(map(len, row), default=0)
            for key, value in row.items():
                print(f"{key:<{width}}  {_cell(value)}")
        return
    if not rows:
        print("(none)")
        return
    columns = list(rows[0])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, default=_json_default)
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _app(args: argparse.Namespace) -> FlowStone:
    """The command's FlowStone, loaded once and closed by `main` when the command ends."""
    if getattr(args, "instance", None) is None:
        args.instance = load_app(getattr(args, "app", None), args.database_url, args.schema)
        set_default(args.instance)
    app: FlowStone = args.instance
    return app


def _common_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """Options accepted before or after the command (`flowstone queues --json`)."""
    parser.add_argument(
        "--database-url", default=default, help="PostgreSQL URL (default: FLOWSTONE_DATABASE_URL or embedded)"
    )
    parser.add_argument("--schema", default=default, help="schema of FlowStone's tables (default flowstone)")
    parser.add_argument("--app", default=default, help="module:attribute of your FlowStone instance")
    parser.add_argument("--json", action="store_true", default=default or False, help="JSON output")


class Commands:
    """Adds leaf commands that all accept the common options."""

    def __init__(self, sub: Any) -> None:
        self.sub = sub
        self.common = argparse.ArgumentParser(add_help=False)
        _common_options(self.common, argparse.SUPPRESS)

    def add(self, name: str, text: str, run: Command, sub: Any = None) -> argparse.ArgumentParser:
        """A command `name` running `run`."""
        parser: argparse.ArgumentParser = (sub or self.sub).add_parser(name, help=text, parents=[self.common])
        parser.set_defaults(run=run)
        return parser

    def group(self, name: str, text: str) -> Any:
        """A command with subcommands."""
        return self.sub.add_parser(name, help=text).add_subparsers(dest=name, required=True)


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    parser = argparse.ArgumentParser(prog="flowstone", description="FlowStone's command line.")
    _common_options(parser, None)
    commands = Commands(parser.add_subparsers(dest="command", required=True))
    commands.add("migrate", "create or upgrade the schema", cmd_migrate)

    worker = commands.add("worker", "run a node until SIGTERM/SIGINT", cmd_worker)
    worker.add_argument("--queues", help="queues to run with limits: assets=10,default=5")
    worker.add_argument("--node", help="node name (default host.pid)")
    worker.add_argument("--log-format", choices=["console", "json"], default="console")
    worker.add_argument("--log-level", default="info")

    jobs = commands.group("jobs", "inspect and steer jobs")
    ls = commands.add("ls", "list jobs", cmd_jobs_ls, jobs)
    ls.add_argument("--queue")
    ls.add_argument("--state", choices=[s.value for s in JobState])
    ls.add_argument("--worker")
    ls.add_argument("--limit", type=int, default=50)
    actions: dict[str, tuple[Command, str]] = {
        "show": (cmd_jobs_show, "show one job"),
        "retry": (_job_action(FlowStone.retry_job, "retried"), "run a job again now"),
        "cancel": (_job_action(FlowStone.cancel_job, "cancelled"), "cancel a job (even executing)"),
    }
    for name, (command, text) in actions.items():
        commands.add(name, text, command, jobs).add_argument("id", type=int)

    queues = commands.add("queues", "per-queue counts; pause, resume or scale a queue", cmd_queues)
    steer = queues.add_subparsers(dest="action")
    for name in ("pause", "resume", "scale"):
        action = commands.add(name, f"{name} a queue on one node or all", _queue_action, steer)
        action.add_argument("queue")
        if name == "scale":
            action.add_argument("limit", type=int)
        action.add_argument("--node", help="only this node (default: all)")
    from flowstone.assets.cli import add_commands  # it builds on this module's helpers

    add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `flowstone` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except BrokenPipeError:  # output piped into a reader that stopped early (`| head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (UsageError, FlowStoneError, ValueError, TypeError) as error:
        print(f"flowstone: error: {one_line(error)}", file=sys.stderr)
        return 2
    finally:
        if getattr(args, "instance", None) is not None:
            args.instance.close()


def one_line(error: Exception) -> str:
    """The error as one line (pydantic lists each invalid field on lines of its own)."""
    if isinstance(error, pydantic.ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in error.errors())
    return " ".join(str(error).split())


if __name__ == "__main__":
    # `python -m flowstone.cli`: run the importable module's `main`, so that commands added
    # by extensions raise the `UsageError` that `main` catches (not `__main__`'s copy).
    from flowstone.cli import main as entry_point

    sys.exit(entry_point())
