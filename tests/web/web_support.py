"""What the dashboard's tests share: their workers, an asset graph and an HTTP client
(importable as a module: every tests folder has a conftest, so `conftest` names none)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from flowstone import AssetRegistry, DailyPartitions, FlowStone, Worker, asset

DAYS = DailyPartitions("2025-01-01")
QUEUE = "web"


class Echo(Worker):
    """Completes at once."""

    queue = QUEUE

    def perform(self, job: Any) -> None:
        return None


class FailOnce(Worker):
    """Fails its first attempt (with a traceback), succeeds after."""

    queue = QUEUE
    max_attempts = 1

    def perform(self, job: Any) -> None:
        if job.attempt == 1:
            raise RuntimeError(f"first attempt of {job.args.get('what', 'job')} fails")


def graph() -> AssetRegistry:
    """raw -> clean -> report, daily; `raw` fails on 2025-01-13."""
    registry = AssetRegistry()

    @asset(partitions=DAYS, registry=registry, description="Orders as they came in.")
    def raw(ctx: Any, deps: dict[str, Any]) -> list[int]:
        if ctx.partition.isoformat() == "2025-01-13":
            raise ValueError("the source had no file for 2025-01-13")
        return [1, 2, 3]

    @asset(depends_on=[raw], partitions=DAYS, registry=registry)
    def clean(ctx: Any, deps: dict[str, Any]) -> list[int]:
        return [n * 2 for n in deps["raw"]]

    @asset(depends_on=[clean], partitions=DAYS, registry=registry)
    def report(ctx: Any, deps: dict[str, Any]) -> int:
        return sum(deps["clean"])

    return registry


def cli_app() -> FlowStone:
    """The same app for `flowstone --app web_support:cli_app --database-url …`."""
    return FlowStone(assets=graph(), queues={QUEUE: 5})


async def heartbeat(fs: FlowStone, node: str, queues: dict[str, Any]) -> None:
    """A node's heartbeat row, as a running node writes it."""
    async with fs.aconnection() as conn:
        await conn.execute(
            "INSERT INTO flowstone.nodes (name, queues) VALUES (%s, %s::jsonb)", (node, json.dumps(queues))
        )


class Client(httpx.AsyncClient):
    """An HTTP client on the dashboard that can post forms the way its pages do."""

    async def token(self) -> str:
        """The CSRF token the pages put in their forms (sets the cookie too)."""
        page = await self.get("/queues")
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found is not None, "no form on the queues page"
        return found.group(1)

    async def submit(self, path: str, data: dict[str, Any] | list[tuple[str, Any]]) -> httpx.Response:
        """POST a form with the CSRF token."""
        form: dict[str, list[str]] = {"csrf": [await self.token()]}
        for name, value in data.items() if isinstance(data, dict) else data:
            form.setdefault(name, []).append(str(value))
        return await self.post(path, data=form)


def client_for(app: Any, **options: Any) -> Client:
    return Client(transport=httpx.ASGITransport(app=app), base_url="http://localhost", **options)
