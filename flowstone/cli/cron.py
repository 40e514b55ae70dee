"""`flowstone cron ls|add|pause|resume|delete`: the cron entries, those stored in the
database managed at run time (`fs.cron`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from flowstone.cli.common import Commands, UsageError, app_of, emit
from flowstone.insights import Insights
from flowstone.queue.dynamic_cron import StoredCron, listing


def add_commands(commands: Commands) -> None:
    """Add `cron` and its subcommands."""
    cron = commands.group("cron", "list cron entries; add, pause, resume or delete stored ones")
    commands.add(
        "ls", "every cron entry: in code and stored (shadowed: a code entry has its name)", cmd_ls, cron
    )
    add = commands.add("add", "store a cron entry (runs on the leader from the next tick)", cmd_add, cron)
    add.add_argument("name")
    add.add_argument("expression", help='5 fields, e.g. "*/5 * * * *"')
    add.add_argument("worker", help="the registered worker's name")
    add.add_argument("--args", default="{}", help="a JSON object (default {})")
    add.add_argument("--timezone", default="UTC")
    add.add_argument("--paused", action="store_true")
    for name, text in (("pause", "stop"), ("resume", "start again"), ("delete", "delete")):
        commands.add(name, f"{text} a stored cron entry", cmd_change, cron).add_argument("name")


def cmd_ls(args: argparse.Namespace) -> int:
    """List every entry."""
    app = app_of(args)
    emit(listing(Insights(app).cron_entries(), app.cron.list()), args.json)
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    """Store a new entry."""
    try:
        values = json.loads(args.args)
    except json.JSONDecodeError as error:
        raise UsageError(f"--args must be a JSON object: {error}") from None
    entry = app_of(args).cron.add(
        args.name, args.expression, args.worker, args=values, timezone=args.timezone, paused=args.paused
    )
    _show(entry, args.json)
    return 0


def cmd_change(args: argparse.Namespace) -> int:
    """Pause, resume or delete a stored entry."""
    cron, action = app_of(args).cron, args.cron
    if action == "delete":
        if not cron.delete(args.name):
            raise UsageError(f"no cron entry named {args.name!r} (see `flowstone cron ls`)")
        emit([{"name": args.name, "deleted": True}], args.json)
        return 0
    _show(cron.pause(args.name) if action == "pause" else cron.resume(args.name), args.json)
    return 0


def _show(entry: StoredCron, as_json: bool) -> None:
    row: dict[str, Any] = entry.to_dict()
    emit([row], as_json)
