"""`python manage.py flowstone COMMAND …`: the `flowstone` command line with Django's
settings loaded and the project's instance (`--app` is `flowstone.contrib.django:fs`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

APP = "flowstone.contrib.django:fs"
DJANGO_OPTIONS = ("--settings", "--pythonpath")
"""Options `manage.py` reads before it runs a command, left out of what `flowstone` parses."""


def run(argv: list[str]) -> int:
    """Run `flowstone ARGV` on the project's instance; its exit code."""
    from flowstone.cli import main

    return main([*_without_django_options(argv), "--app", APP])


def _without_django_options(argv: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in DJANGO_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{option}=" for option in DJANGO_OPTIONS)):
            kept.append(arg)
    return kept


class Command(BaseCommand):
    """Every `flowstone` command: `manage.py flowstone migrate`, `… worker --queues default=10`,
    `… jobs ls`, `… dashboard` (see `manage.py flowstone --help`)."""

    help = "Run a FlowStone command (migrate, worker, jobs, queues, assets, dashboard, …) on this project."

    def run_from_argv(self, argv: list[str]) -> None:
        """`flowstone` parses its own options; its exit code is the process's."""
        code = run(argv[2:])
        if code:
            sys.exit(code)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("args", nargs=argparse.REMAINDER, help="a flowstone command and its options")

    def handle(self, *args: Any, **options: Any) -> None:
        """`call_command("flowstone", "migrate")`."""
        code = run(list(args))
        if code:
            raise CommandError(f"flowstone {' '.join(args)} exited with code {code}", returncode=code)
