"""`flowstone embedded start|status|stop`: the embedded PostgreSQL's life cycle.

The server FlowStone starts when no database URL is given keeps running after the
process that started it exits (the next one reuses it); these commands show where it
lives and whether it runs, and stop it.
"""

from __future__ import annotations

import argparse

from flowstone import embedded
from flowstone.cli.common import Commands, emit_one


def add_commands(commands: Commands) -> None:
    """Add the embedded server's commands to `flowstone`'s command tree."""
    group = commands.group("embedded", "the embedded PostgreSQL: start, status, stop")
    for name, run, text in (
        ("start", cmd_start, "start it (or find it running) and print its URL"),
        ("status", cmd_status, "its data directory, and whether it runs"),
        ("stop", cmd_stop, "stop it (clients connected to it are disconnected)"),
    ):
        command = commands.add(name, text, run, group)
        command.add_argument("--data-dir", help="data directory (default: FLOWSTONE_DATA_DIR or per user)")


def _show(status: embedded.Status, as_json: bool) -> None:
    row = {"data_dir": str(status.data_dir), "running": status.running, "pid": status.pid, "url": status.url}
    emit_one(row, as_json)


def cmd_start(args: argparse.Namespace) -> int:
    """Start the server unless it runs; show it."""
    embedded.server(args.data_dir)
    _show(embedded.status(args.data_dir), args.json)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Show the server without starting it."""
    _show(embedded.status(args.data_dir), args.json)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop the server if it runs."""
    stopped = embedded.stop(args.data_dir)
    where = embedded.data_dir(args.data_dir)
    print(
        f"stopped the embedded PostgreSQL in {where}"
        if stopped
        else f"no embedded PostgreSQL runs in {where}"
    )
    return 0
