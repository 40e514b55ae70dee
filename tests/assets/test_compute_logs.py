"""Compute logs: per materialization even when several run at once in one process
(threads, asyncio tasks), bounded with a note, and nothing left installed after."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import weakref
from typing import Any

import pytest

from flowstone import AssetWorker, Context, FlowStone, asset
from flowstone.assets.compute_logs import ComputeLog, asset_logger, capturing
from flowstone.insights import Insights
from flowstone.testing import perform_job


def _chatter(name: str, barrier: threading.Barrier) -> None:
    """Print, write to stderr and log, meeting the other thread between each."""
    for n in range(3):
        print(f"{name} out {n}")
        barrier.wait(5)
        sys.stderr.write(f"{name} err {n}\n")
        asset_logger(name).info("%s logged %d", name, n)
        barrier.wait(5)


def test_two_threads_keep_their_own_lines() -> None:
    barrier = threading.Barrier(2)
    logs = {name: ComputeLog() for name in ("left", "right")}

    def run(name: str) -> None:
        with capturing(logs[name]):
            _chatter(name, barrier)

    threads = [threading.Thread(target=run, args=(name,)) for name in logs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    for name, other in (("left", "right"), ("right", "left")):
        text = logs[name].text() or ""
        assert f"{name} out 2\n" in text and f"{name} err 2\n" in text and f"{name} logged 2" in text
        assert other not in text, "no line of the other materialization"


@pytest.mark.anyio
async def test_two_tasks_keep_their_own_lines() -> None:
    logs = {name: ComputeLog() for name in ("first", "second")}
    barrier = asyncio.Barrier(2)

    async def run(name: str) -> None:
        with capturing(logs[name]):
            for n in range(3):
                print(f"{name} {n}")
                await barrier.wait()  # both wrote line n before either writes n + 1

    async with asyncio.timeout(10):
        await asyncio.gather(*(run(name) for name in logs))
    assert logs["first"].text() == "first 0\nfirst 1\nfirst 2\n"
    assert logs["second"].text() == "second 0\nsecond 1\nsecond 2\n"


def test_streams_and_handler_are_restored_after_the_last_capture() -> None:
    before = (sys.stdout, sys.stderr, list(logging.getLogger().handlers))
    with capturing(ComputeLog()), capturing(ComputeLog()):
        assert sys.stdout is not before[0]
    assert (sys.stdout, sys.stderr, list(logging.getLogger().handlers)) == before


def test_a_proxy_taken_out_stays_alive_for_a_print_in_flight() -> None:
    """print() holds sys.stdout as a borrowed reference while it writes: freeing the proxy
    the last capture's end takes out crashed a process printing from another thread
    (SIGSEGV, seen in the dashboard demo)."""
    with capturing(ComputeLog()):
        proxy = weakref.ref(sys.stdout)
    gc.collect()
    assert proxy() is not None and sys.stdout is not proxy()


def test_a_long_log_keeps_its_end_and_says_it_was_cut() -> None:
    log = ComputeLog(limit=100)
    with capturing(log):
        for n in range(50):
            print(f"line {n:02d}")  # 8 characters each: 400 in all
    text = log.text() or ""
    assert text.startswith("[… 300 earlier characters cut: the last 100 are kept …]\n")
    assert text.endswith("line 48\nline 49\n") and "line 37" not in text
    assert len(text.split("\n", 1)[1]) == 100


def test_what_an_asset_prints_and_logs_is_recorded_and_silence_is_null(flowstone: FlowStone) -> None:
    @asset
    def quiet(ctx: Context, deps: dict[str, Any]) -> int:
        return 1

    @asset
    def chatty(ctx: Context, deps: dict[str, Any]) -> int:
        print("hello from chatty")
        ctx.log.info("computed %d", 1)
        return 1

    for name in ("quiet", "chatty"):
        assert perform_job(AssetWorker, {"asset_name": name, "run_id": "logs"}) is None
    insights = Insights(flowstone)
    ids = {name: insights.history(name)[0].id for name in ("quiet", "chatty")}
    logs = insights.logs(list(ids.values()))
    assert ids["quiet"] not in logs, "nothing printed: no log stored"
    assert "hello from chatty\n" in logs[ids["chatty"]]
    assert "INFO flowstone.asset.chatty: computed 1" in logs[ids["chatty"]]
