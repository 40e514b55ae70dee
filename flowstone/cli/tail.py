"""`flowstone jobs tail`: one line per job inserted or ended, as it happens, until Ctrl-C."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from flowstone.cli.common import Commands, app_of, cell
from flowstone.insights.tail import EVENTS, TailEvent, TailFilter, follow


def add_tail(commands: Commands, jobs: Any) -> None:
    """Add `tail` to the `jobs` group."""
    tail = commands.add(
        "tail", "follow jobs as they are inserted and end (Ctrl-C stops)", cmd_jobs_tail, jobs
    )
    tail.add_argument("--queue")
    tail.add_argument("--worker")
    tail.add_argument("--state", choices=EVENTS, help="the state a job was inserted or ended in")


def cmd_jobs_tail(args: argparse.Namespace) -> int:
    """Print each event as it comes (JSON lines with --json); Ctrl-C ends it normally."""
    where = TailFilter(queue=args.queue, worker=args.worker, state=args.state)
    try:
        for event in follow(app_of(args), where, ready=_ready):
            print(_line(event, args.json), flush=True)
    except KeyboardInterrupt:
        return 0
    return 0


def _ready() -> None:
    print("following jobs; Ctrl-C stops", file=sys.stderr, flush=True)


def _line(event: TailEvent, as_json: bool) -> str:
    if as_json:
        return json.dumps(event.to_dict(), default=str, separators=(",", ":"))
    job = event.job
    args = json.dumps(job.args, separators=(",", ":"))
    parts = [cell(event.at), event.kind, event.event, f"#{job.id}", job.queue, job.worker, args[:80]]
    if event.event in ("discarded", "cancelled") and job.errors:
        parts.append(str(job.errors[-1].get("error", ""))[:120])
    return "  ".join(parts)
