"""What every command shares: the options, loading the app, usage errors and output."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from flowstone.queue.instance import FlowStone

Command = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit code 2."""


def load_app(spec: str | None, database_url: str | None, schema: str | None) -> FlowStone:
    """The FlowStone named by `module:attr` (an instance or a factory), or a plain one."""
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


def app_of(args: argparse.Namespace) -> FlowStone:
    """The command's FlowStone, loaded once and closed by `main` when the command ends."""
    if getattr(args, "instance", None) is None:
        args.instance = load_app(getattr(args, "app", None), args.database_url, args.schema)
    app: FlowStone = args.instance
    return app


def emit_one(row: dict[str, Any], as_json: bool) -> None:
    """Print one thing (a job, a workflow, a record) as a JSON object, or as `key  value`
    lines for people."""
    if as_json:
        print(json.dumps(row, default=_json_default, indent=2))
        return
    width = max(map(len, row), default=0)
    for key, value in row.items():
        print(f"{key:<{width}}  {cell(value)}")


def emit(rows: Sequence[dict[str, Any]], as_json: bool) -> None:
    """Print rows as JSON (one list) or as a table for people."""
    if as_json:
        print(json.dumps(list(rows), default=_json_default, indent=2))
        return
    if not rows:
        print("(none)")
        return
    columns = list(rows[0])
    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def cell(value: Any) -> str:
    """A value as a table cell."""
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
    if isinstance(value, timedelta):
        return value.total_seconds()
    return str(value)


def common_options(parser: argparse.ArgumentParser, default: Any) -> None:
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
        common_options(self.common, argparse.SUPPRESS)

    def add(self, name: str, text: str, run: Command, sub: Any = None) -> argparse.ArgumentParser:
        """A command `name` running `run`."""
        parser: argparse.ArgumentParser = (sub or self.sub).add_parser(name, help=text, parents=[self.common])
        parser.set_defaults(run=run)
        return parser

    def group(self, name: str, text: str) -> Any:
        """A command with subcommands."""
        return self.sub.add_parser(name, help=text).add_subparsers(dest=name, required=True)
