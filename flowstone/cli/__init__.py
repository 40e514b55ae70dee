"""`flowstone`: the operator's command line (migrate, worker, jobs, queues, assets,
dashboard, metrics).

A package that depends downward only: `common` (options, app loading, output), one
module per command group (`queue`, `assets`, `web`); every read goes through `flowstone.insights`.
Bad input — an app that cannot be imported, an unknown queue, a malformed limit, an
invalid cron expression, a database that cannot be used — gets a one-line error and exit
code 2 before any job runs; Ctrl-C exits 130 with one line saying what it stopped.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from flowstone import __version__
from flowstone.cli import assets, cron, embedded, queue, web
from flowstone.cli.common import Commands, UsageError, common_options
from flowstone.errors import FlowStoneError, one_line
from flowstone.logs import configure_logging


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    parser = argparse.ArgumentParser(prog="flowstone", description="FlowStone's command line.")
    parser.add_argument("--version", action="version", version=f"flowstone {__version__}")
    common_options(parser, None)
    commands = Commands(parser.add_subparsers(dest="command", required=True))
    queue.add_commands(commands)
    cron.add_commands(commands)
    assets.add_commands(commands)
    web.add_commands(commands)
    embedded.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `flowstone` command."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "dimension_options", False):  # as parse_args would
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    if args.command != "worker":  # the worker sets up its own logging from its options
        configure_logging("console", "warning", cache=False)  # stdout is the command's output
    try:
        return int(args.run(args))
    except KeyboardInterrupt:  # Ctrl-C: what it stopped is the command's to say
        print(f"flowstone: {getattr(args, 'on_interrupt', 'interrupted')}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped early (`| head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (UsageError, FlowStoneError, ValueError, TypeError) as error:
        print(f"flowstone: error: {one_line(error)}", file=sys.stderr)
        return 2
    finally:
        if getattr(args, "instance", None) is not None:
            args.instance.close()


__all__ = ["build_parser", "main"]
