"""`create_app`: the dashboard as an ASGI application (Starlette), mountable in a user's
FastAPI or Starlette app or served by `flowstone dashboard`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import anyio.to_thread
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from flowstone.assets.definitions import AssetRegistry
from flowstone.errors import FlowStoneError, ValidationError
from flowstone.insights import Insights
from flowstone.queue.instance import FlowStone
from flowstone.web import actions, pages
from flowstone.web.base import (
    Dashboard,
    JSONResponse,
    api,
    dashboard,
    page,
    render,
    root,
    templates,
    wants_json,
)
from flowstone.web.live import LiveHub, event_stream
from flowstone.web.metrics import registry_for
from flowstone.web.security import Auth, Guard, Hosts

STATIC = Path(__file__).with_name("static")


def create_app(
    fs: FlowStone,
    *,
    auth: Auth | None = None,
    read_only: bool = False,
    assets: AssetRegistry | None = None,
    interval: float = 1.0,
    allowed_hosts: Iterable[str] = (),
) -> Starlette:
    """The dashboard of `fs` (and its asset graph, or `assets`) as an ASGI app.

    `auth(request)` returns (or awaits) True to let a request in (`basic_auth`,
    `token_auth`); `read_only` hides and refuses every action; `interval` is how often, in
    seconds, open pages learn of jobs that moved without a notification. Requests must
    name the dashboard by a loopback name (`localhost`, `127.0.0.1`, `[::1]`) or one of
    `allowed_hosts` (names, addresses, `*.example.com`; `*` lets any through): anything
    else is refused with 400 (DNS rebinding)."""
    hosts = Hosts(allowed_hosts)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
        raise ValidationError(f"interval must be a positive number of seconds; got {interval!r}")
    insights = Insights(fs, assets)
    board = Dashboard(fs, insights, LiveHub(insights, interval), templates(), read_only)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await board.hub.stop()

    app = Starlette(
        routes=_routes(),
        middleware=[Middleware(Guard, auth=auth, hosts=hosts)],
        exception_handlers={FlowStoneError: _flowstone_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.dashboard = board
    return app


def _routes() -> list[Route | Mount]:
    return [
        Route("/", _home),
        Route("/queues", page("queues.html", pages.load_queues, pages.queues_drawing)),
        Route("/jobs", page("jobs.html", pages.load_jobs)),
        Route("/jobs/bulk", actions.bulk_action, methods=["POST"]),
        Route("/jobs/{job_id:int}", page("job.html", pages.load_job)),
        Route("/jobs/{job_id:int}/{action}", actions.job_action, methods=["POST"]),
        Route("/queues/{queue}/{action}", actions.queue_action, methods=["POST"]),
        Route("/workflows/{workflow_id}/retry", actions.workflow_retry_action, methods=["POST"]),
        Route("/cron", page("cron.html", pages.load_cron)),
        Route("/cron/entries", actions.cron_add_action, methods=["POST"]),
        Route("/cron/entries/{name}", actions.cron_update_action, methods=["POST"]),
        Route("/cron/entries/{name}/{action}", actions.cron_action, methods=["POST"]),
        Route("/assets", page("assets.html", pages.load_assets, pages.assets_drawing)),
        Route("/assets/{name}", page("asset.html", pages.load_partitions)),
        Route("/assets/{name}/history", page("history.html", pages.load_history)),
        Route("/assets/{name}/materialize", actions.materialize_action, methods=["POST"]),
        Route("/assets/{name}/backfill", actions.backfill_action, methods=["POST"]),
        Route("/runs/{run_id}", page("run.html", pages.load_run)),
        Route("/api/queues", api(pages.load_queues)),
        Route("/api/jobs", api(pages.load_jobs)),
        Route("/api/jobs/{job_id:int}", api(pages.load_job)),
        Route("/api/cron", api(pages.load_cron)),
        Route("/api/assets", api(pages.load_assets)),
        Route("/api/assets/{name}/partitions", api(pages.load_partitions)),
        Route("/api/assets/{name}/history", api(pages.load_history)),
        Route("/api/runs/{run_id}", api(pages.load_run)),
        Route("/events", _events),
        Route("/metrics", _metrics),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


async def _home(request: Request) -> Response:
    return RedirectResponse(f"{root(request)}/queues")


async def _events(request: Request) -> Response:
    """Server-sent events: `change` whenever what the pages show may have changed."""
    headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
    return StreamingResponse(
        event_stream(dashboard(request).hub), media_type="text/event-stream", headers=headers
    )


async def _metrics(request: Request) -> Response:
    """Prometheus text exposition (the collector reads synchronously, off the event loop)."""
    registry = registry_for(dashboard(request).insights)
    body = await anyio.to_thread.run_sync(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def _flowstone_error(request: Request, error: Exception) -> Response:
    """Bad input (a partition that does not fit, an unknown asset) as 400/404 with its one line."""
    assert isinstance(error, FlowStoneError)
    status = 404 if error.type == "asset_not_found" else 400
    return _error(request, status, error.message)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return _error(request, error.status_code, error.detail)


def _error(request: Request, status: int, message: str) -> Response:
    if wants_json(request):
        return JSONResponse({"error": message}, status)
    return render(request, "error.html", {"status": status, "message": message}, status=status)
