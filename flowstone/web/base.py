"""What every page and endpoint shares: the dashboard's state, rendering HTML and JSON,
and the few formats the templates use."""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from flowstone.insights import STATUSES, Insights
from flowstone.queue.instance import FlowStone
from flowstone.queue.job import JobState
from flowstone.web.live import LiveHub
from flowstone.web.security import csrf_token, remember_csrf

Endpoint = Callable[[Request], Awaitable[Response]]
Loader = Callable[[Request], Awaitable[dict[str, Any]]]
Extra = Callable[[Request, dict[str, Any]], Awaitable[dict[str, Any]]]

NOTICES = {
    "retried": "Retried {count} job(s).",
    "cancelled": "Cancelled {count} job(s).",
    "deleted": "Deleted {count} job(s).",
    "skipped": "{count} job(s) could not be changed in their state.",
    "paused": "Paused the queue.",
    "resumed": "Resumed the queue.",
    "scaled": "Scaled the queue (stored: it overrides the nodes' configured limit until reset).",
    "reset": "Reset the queue: its nodes are back to their configured settings.",
    "cron-added": "Stored the cron entry: the leader runs it from the next tick.",
    "cron-updated": "Updated the cron entry: the leader runs it as changed from the next tick.",
    "cron-paused": "Paused the cron entry.",
    "cron-resumed": "Resumed the cron entry.",
    "cron-deleted": "Deleted the cron entry.",
}
"""The messages an action's redirect can show (by key: a URL cannot inject text)."""


@dataclasses.dataclass
class Dashboard:
    """One dashboard: the instance it shows, its read layer, its live hub, its templates."""

    fs: FlowStone
    insights: Insights
    hub: LiveHub
    templates: jinja2.Environment
    read_only: bool = False


def dashboard(request: Request) -> Dashboard:
    """The dashboard serving `request`."""
    return cast(Dashboard, request.app.state.dashboard)


def root(request: Request) -> str:
    """The path the dashboard is mounted at ('' at the top)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def wants_json(request: Request) -> bool:
    """Whether `request` is to the JSON API (`/api/...`)."""
    return request.url.path.startswith(f"{root(request)}/api/")


def render(
    request: Request,
    template: str,
    data: Mapping[str, Any],
    drawn: Mapping[str, Any] | None = None,
    status: int = 200,
) -> Response:
    """A page: `template` rendered with `data` (also what the API serves), `drawn` (only
    the page's) and what every page needs."""
    board = dashboard(request)
    notice = NOTICES.get(request.query_params.get("notice", ""), "")
    context = {
        **data,
        **(drawn or {}),
        "request": request,
        "root": root(request),
        "section": request.url.path[len(root(request)) :].strip("/").partition("/")[0],
        "csrf": csrf_token(request),
        "read_only": board.read_only,
        "interval": board.hub.interval,
        "version": board.hub.version,
        "notice": notice.format(count=_count(request.query_params.get("count"))),
    }
    response = HTMLResponse(board.templates.get_template(template).render(context), status)
    remember_csrf(request, response)
    return response


def _count(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 1


def jsonable(value: Any) -> Any:
    """`value` made of JSON types: dates as ISO 8601, durations in seconds, dataclasses and
    enums by their fields and values."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


class JSONResponse(Response):
    """JSON of any value `jsonable` understands."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(jsonable(content), ensure_ascii=False).encode()


def page(template: str, load: Loader, extra: Extra | None = None) -> Endpoint:
    """The HTML endpoint of a loader; `extra` adds what only the page draws."""

    async def endpoint(request: Request) -> Response:
        data = await load(request)
        drawn = {} if extra is None else await extra(request, data)
        return render(request, template, data, drawn)

    return endpoint


def api(load: Loader) -> Endpoint:
    """The JSON endpoint of the same loader (what `/api/...` serves)."""

    async def endpoint(request: Request) -> Response:
        return JSONResponse(await load(request))

    return endpoint


# -- formats used by the templates -------------------------------------------------------


def when(value: datetime | None) -> str:
    """A timestamp in UTC to the second."""
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago (or in how long) `value` is: `3 s ago`, `in 2 min`."""
    if value is None:
        return "-"
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    text = duration(abs(seconds))
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def duration(seconds: float | timedelta | None) -> str:
    """A duration for people: `85 ms`, `4.2 s`, `3 min`, `2 h`, `5 d`."""
    if seconds is None:
        return "-"
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def number(value: int | None, estimated: bool = False) -> str:
    """A count with thousands separators, `≈` in front of an estimate."""
    if value is None:
        return "-"
    return f"{'≈' if estimated and value else ''}{value:,}"


def pretty(value: Any) -> str:
    """JSON for reading (indented); the template escapes it."""
    return json.dumps(jsonable(value), indent=2, ensure_ascii=False, sort_keys=True)


FOLD_AT = 65_536
"""Characters of a JSON value a page shows; a longer one is cut there (its `/api/` twin
has it whole): a 10 MB value would make a page a browser takes seconds to lay out."""
PREVIEW = 200
"""Characters of a job's args a list shows."""


@dataclasses.dataclass(frozen=True)
class Folded:
    """A JSON value as a page shows it: `text`, and `size`, its compact length; `cut`
    when `text` is only its beginning."""

    text: str
    size: int
    cut: bool


def compact(value: Any) -> str:
    """JSON of a value read from the database, on one line."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def folded(value: Any, limit: int = FOLD_AT) -> Folded:
    """`value` indented for reading, or, beyond `limit` characters, the beginning of it."""
    text = compact(value)
    if len(text) > limit:
        return Folded(text[:limit], len(text), True)
    return Folded(pretty(value), len(text), False)


def preview(text: str, limit: int = PREVIEW) -> str:
    """The beginning of a value's `compact` JSON (… when cut)."""
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def templates() -> jinja2.Environment:
    """The dashboard's template environment: autoescaping everything it renders."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("flowstone.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, ago=ago, duration=duration, number=number, pretty=pretty, folded=folded)
    env.globals["states"] = [state.value for state in JobState]
    env.globals["statuses"] = STATUSES  # a partition's, from the read layer
    return env
