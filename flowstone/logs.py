"""Logging through structlog: a console renderer for people, JSON lines on request.

The console renderer colours its output only for a terminal: piped into a file or a log
collector, lines carry no ANSI codes (NO_COLOR turns colours off on a terminal too).
Libraries that log through the standard library (psycopg_pool's connection errors) come
out in the same format, unless the process configured the standard library itself.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog


def configure_logging(fmt: str = "console", level: str = "info", *, cache: bool = True) -> None:
    """Set up structlog (and stdlib logging), on stderr, for a process such as `flowstone
    worker` (`cache=False` keeps loggers reconfigurable, for a command run in-process)."""
    if fmt not in ("console", "json"):
        raise ValueError(f"log format must be 'console' or 'json'; got {fmt!r}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(
            colors=colours(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    stamped: list[structlog.types.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    _route_standard_library(renderer, stamped, numeric)
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *stamped, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=cache,
    )


class StandardLines(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler through which standard library records reach FlowStone's format."""


def _route_standard_library(
    renderer: structlog.types.Processor, stamped: list[structlog.types.Processor], level: int
) -> None:
    """Render the standard library's records (psycopg_pool's) as structlog's, on stderr,
    from `level` on; left alone when the process installed a handler of its own."""
    root = logging.getLogger()
    ours = [handler for handler in root.handlers if isinstance(handler, StandardLines)]
    if len(ours) < len(root.handlers):
        return
    for handler in ours:
        root.removeHandler(handler)
    handler = StandardLines(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *stamped],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root.addHandler(handler)
    root.setLevel(level)


def colours() -> bool:
    """Whether console lines may carry colours: stderr is a terminal and NO_COLOR is unset."""
    return sys.stderr.isatty() and not os.environ.get("NO_COLOR")


def _stderr_logger(*args: object) -> structlog.PrintLogger:
    """A logger writing to whatever `sys.stderr` is when the logger is made (not when
    logging was configured: a test harness or a daemonizer may have replaced it since)."""
    return structlog.PrintLogger(sys.stderr)
