"""Prometheus series: the dashboard's /metrics and `flowstone metrics`, the same ones."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import wait_until
from web_support import QUEUE, Client, Echo, heartbeat

from flowstone import FlowStone, amaterialize_all
from flowstone.testing import adrain_queue

pytestmark = pytest.mark.anyio


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_the_dashboard_exposes_queues_nodes_and_assets(client: Client, app_fs: FlowStone) -> None:
    await app_fs.ainsert_all([Echo.new({"n": n}) for n in range(3)])
    await amaterialize_all("clean", "2025-01-02", fs=app_fs)
    await adrain_queue("assets", with_scheduled=True, fs=app_fs)
    await heartbeat(app_fs, "node-a", {QUEUE: {"limit": 5, "paused": True, "running": 2}})
    response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert found[("flowstone_jobs", (("queue", QUEUE), ("state", "available")))] == 3
    assert found[("flowstone_jobs", (("queue", "assets"), ("state", "completed")))] == 2
    assert found[("flowstone_jobs_estimated", (("state", "completed"),))] == 0
    assert found[("flowstone_queue_limit", (("node", "node-a"), ("queue", QUEUE)))] == 5
    assert found[("flowstone_queue_executing", (("node", "node-a"), ("queue", QUEUE)))] == 2
    assert found[("flowstone_queue_paused", (("node", "node-a"), ("queue", QUEUE)))] == 1
    assert found[("flowstone_node_alive", (("node", "node-a"),))] == 1
    assert 0 <= found[("flowstone_node_heartbeat_age_seconds", (("node", "node-a"),))] < 60
    assert found[("flowstone_asset_partitions", (("asset", "clean"), ("status", "fresh")))] == 1
    assert found[("flowstone_asset_partitions", (("asset", "clean"), ("status", "cancelled")))] == 0
    assert ("flowstone_jobs_finished_last_minute", (("outcome", "completed"),)) in found
    assert 0 < found[("flowstone_scrape_duration_seconds", ())] < 5


@pytest.fixture
def free_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield port


def serve(url: str, *argv: str) -> subprocess.Popen[str]:
    """`flowstone ARGV…` as a process on the test's database (tests/web on its path)."""
    env = {**os.environ, "FLOWSTONE_DATABASE_URL": url, "PYTHONPATH": os.path.dirname(__file__)}
    command = [sys.executable, "-m", "flowstone.cli", *argv]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def get(url: str, **options: Any) -> httpx.Response | None:
    """The response, or None while the server is not listening yet."""
    try:
        return httpx.get(url, timeout=5, **options)
    except httpx.TransportError:
        return None


def test_flowstone_metrics_serves_the_same_series(flowstone: FlowStone, free_port: int) -> None:
    flowstone.insert_all([Echo.new({"n": n}) for n in range(2)])
    server = serve(flowstone.settings.database_url or "", "metrics", "--port", str(free_port))
    try:
        response = wait_until(lambda: get(f"http://127.0.0.1:{free_port}/metrics"), 30, "flowstone metrics")
        found = samples(response.text)
        assert found[("flowstone_jobs", (("queue", QUEUE), ("state", "available")))] == 2
        assert not any(name.startswith("process_") for name, _ in found)
    finally:
        server.terminate()
        server.wait(10)


def test_flowstone_dashboard_asks_for_credentials(flowstone: FlowStone, free_port: int) -> None:
    url = flowstone.settings.database_url or ""
    server = serve(url, "dashboard", "--port", str(free_port), "--basic-auth", "ops:s3cret", "--read-only")
    try:
        refused = wait_until(lambda: get(f"http://127.0.0.1:{free_port}/queues"), 30, "flowstone dashboard")
        assert refused.status_code == 401
        page = httpx.get(f"http://127.0.0.1:{free_port}/queues", auth=("ops", "s3cret"), timeout=5)
        assert page.status_code == 200 and "read-only" in page.text
    finally:
        server.terminate()
        server.wait(10)
    assert f"FlowStone dashboard on http://127.0.0.1:{free_port}/ (read-only)" in server.stdout.read()  # type: ignore[union-attr]


def test_flowstone_dashboard_answers_only_its_hosts(flowstone: FlowStone, free_port: int) -> None:
    url = flowstone.settings.database_url or ""
    server = serve(url, "dashboard", "--port", str(free_port), "--allowed-host", "dash.example.com")
    try:
        wait_until(lambda: get(f"http://127.0.0.1:{free_port}/api/queues"), 30, "flowstone dashboard")
        for host, status in [("dash.example.com", 200), ("localhost:1", 200), ("attacker.example", 400)]:
            answer = httpx.get(f"http://127.0.0.1:{free_port}/api/queues", headers={"host": host}, timeout=5)
            assert answer.status_code == status, host
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["dashboard", "--token-env", "FLOWSTONE_TEST_NO_SUCH_VAR"], "that environment variable is not set"),
        (["dashboard", "--basic-auth", "nopassword"], "--basic-auth must look like USER:PASSWORD"),
        (["--schema", "elsewhere", "metrics"], "schema 'elsewhere' is not migrated"),
        (["dashboard", "--port", "70000"], "--port must be from 1 to 65535"),
        (["dashboard", "--interval", "0"], "interval must be a positive number of seconds"),
        (["dashboard", "--allowed-host", "a/b"], "allowed host 'a/b' is not a host name"),
    ],
)
def test_bad_options_are_one_line_errors(
    flowstone_url: str, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from flowstone.cli import main

    assert main(["--database-url", flowstone_url, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flowstone: error: ") and err.count("\n") == 1 and message in err
