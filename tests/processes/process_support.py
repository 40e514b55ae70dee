"""Helpers for process-level tests: worker subprocesses and waiting on the database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).parent
JOB_STATES = "SELECT state::text, count(*) FROM flowstone.jobs GROUP BY 1"


class WorkerProcess:
    """A `flowstone worker` subprocess whose log lines are collected as they arrive."""

    def __init__(
        self,
        url: str,
        node: str,
        queues: str = "work=10",
        app: str = "proc_app:app",
        argv: Sequence[str] = (),
        **env: str,
    ) -> None:
        self.node = node
        self.lines: list[str] = []
        self.started = threading.Event()
        environment = {**os.environ, "FLOWSTONE_DATABASE_URL": url, "PYTHONPATH": str(HERE), **env}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flowstone.cli",
                "worker",
                "--app",
                app,
                "--queues",
                queues,
                "--node",
                node,
                "--log-format",
                "json",
                *argv,
            ],
            env=environment,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if "node started" in line:
                self.started.set()

    def wait_started(self, timeout: float = 30) -> None:
        """Block until the node listens and produces."""
        if not self.started.wait(timeout):
            self.process.kill()
            raise AssertionError(f"{self.node} did not start:\n{''.join(self.lines)}")

    def signal(self, number: int) -> None:
        """Send a signal (SIGTERM, SIGKILL)."""
        self.process.send_signal(number)

    def wait(self, timeout: float) -> int:
        """The exit code, once the process has exited."""
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Make sure the process is gone."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


Params = tuple[Any, ...] | dict[str, Any]


def scalar(url: str, query: str, params: Params = ()) -> Any:
    """One value from a fresh connection (works while servers restart)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(query, params).fetchone()
        return None if row is None else row[0]


def rows(url: str, query: str, params: Params = ()) -> list[tuple[Any, ...]]:
    """Every row of one query, from a fresh connection."""
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def settled(url: str, jobs: int) -> bool:
    """Every one of the `jobs` jobs reached a final state."""
    states = dict(rows(url, JOB_STATES))
    return sum(states.get(s, 0) for s in ("completed", "discarded", "cancelled")) == jobs


StartWorkers = Callable[..., list[WorkerProcess]]
"""The `asset_workers` fixture: start `count` asset nodes with an environment."""
