"""`flowstone jobs tail` as a real process: a job inserted shows within a second, its end
(run by a real worker) too, and Ctrl-C (SIGINT) exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from proc_app import Work
from process_support import HERE, WorkerProcess

from flowstone import FlowStone


class Tail:
    """A `flowstone jobs tail --json` subprocess; its lines collected with their arrival."""

    def __init__(self, url: str, *options: str) -> None:
        env = {**os.environ, "FLOWSTONE_DATABASE_URL": url, "PYTHONPATH": str(HERE)}
        command = [sys.executable, "-m", "flowstone.cli", "jobs", "tail", "--json", *options]
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.ready = threading.Event()
        self.changed = threading.Condition()
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.events.append((time.monotonic(), json.loads(line)))
                self.changed.notify_all()

    def _read_err(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if "following jobs" in line:
                self.ready.set()

    def first(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> tuple[float, dict[str, Any]]:
        """The first event matching, waited for up to `timeout` seconds."""
        with self.changed:
            found = self.changed.wait_for(
                lambda: next((e for e in self.events if match(e[1])), None), timeout
            )
        assert found, f"no such event in {[e for _, e in self.events]}"
        return found


def test_tail_shows_an_inserted_job_within_a_second_and_exits_0_on_sigint(
    flowstone: FlowStone, flowstone_url: str, workers: Callable[..., WorkerProcess]
) -> None:
    tail = Tail(flowstone_url, "--queue", "work")
    try:
        assert tail.ready.wait(30), "tail did not start"
        before = time.monotonic()
        job = flowstone.insert(Work.new({"max_ms": 1}))
        flowstone.insert(Work.new({}, queue="elsewhere"))
        at, inserted = tail.first(lambda e: e["kind"] == "inserted" and e["job"]["id"] == job.id)
        assert at - before < 1.0, f"shown {at - before:.2f} s after the insert"
        assert inserted["event"] == "available" and inserted["job"]["worker"] == Work.name
        workers("tail-node").wait_started()
        _, ended = tail.first(lambda e: e["kind"] == "ended" and e["job"]["id"] == job.id, timeout=30)
        assert ended["event"] == "completed"
        assert all(e["job"]["queue"] == "work" for _, e in tail.events), "--queue filters"
        tail.process.send_signal(signal.SIGINT)
        assert tail.process.wait(10) == 0
    finally:
        if tail.process.poll() is None:
            tail.process.kill()
