"""The dashboard's actions: POSTs carrying the CSRF token, refused on a read-only
dashboard, done through FlowStone's public API, answered by a redirect (POST, redirect,
GET) to the page that shows the result. Bulk actions first show what they will do and
act only once that is confirmed."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from flowstone.assets.api import abackfill, amaterialize, amaterialize_all
from flowstone.errors import ValidationError
from flowstone.queue.instance import FlowStone
from flowstone.web.base import dashboard, render, root
from flowstone.web.security import CSRF_FIELD, csrf_ok

Form = dict[str, list[str]]
MAX_BULK = 500
"""Jobs one bulk action may name."""

JOB_ACTIONS: dict[str, tuple[Callable[[FlowStone, int], Awaitable[Any]], str]] = {
    "retry": (FlowStone.aretry_job, "retried"),
    "cancel": (FlowStone.acancel_job, "cancelled"),
    "delete": (FlowStone.adelete_job, "deleted"),
}


async def form_of(request: Request) -> Form:
    """The posted form, once the request passed the read-only and CSRF checks."""
    if dashboard(request).read_only:
        raise HTTPException(403, "this dashboard is read-only")
    body = (await request.body()).decode("utf-8", "replace")
    form = parse_qs(body, keep_blank_values=True)
    if not csrf_ok(request, _one(form, CSRF_FIELD)):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
    return form


def _one(form: Form, name: str) -> str | None:
    values = form.get(name)
    return values[0].strip() if values else None


def _back(request: Request, path: str, **query: Any) -> Response:
    """A redirect to `path` of this dashboard (303: the browser GETs it)."""
    suffix = f"?{urlencode(query)}" if query else ""
    return RedirectResponse(f"{root(request)}{path}{suffix}", 303)


_OWN_PATH = re.compile(r"/(?![/\\])[^\\\s\x00-\x1f\x7f]*")
"""A path of this site: browsers read a leading `//` or `/\\` (also with tabs or line
breaks between, which they drop) as another host's address."""


def _return_path(form: Form, default: str) -> str:
    """Where a form asks to go back to: a path of this dashboard only."""
    path = _one(form, "back") or default
    return path if _OWN_PATH.fullmatch(path) else default


async def job_action(request: Request) -> Response:
    """Retry, cancel or delete one job."""
    await form_of(request)
    job_id, name = int(request.path_params["job_id"]), request.path_params["action"]
    if name not in JOB_ACTIONS:
        raise HTTPException(404, f"no job action {name!r}")
    action, verb = JOB_ACTIONS[name]
    done = await action(dashboard(request).fs, job_id)
    notice = verb if done else "skipped"
    return _back(request, "/jobs" if name == "delete" and done else f"/jobs/{job_id}", notice=notice)


async def bulk_action(request: Request) -> Response:
    """Retry, cancel or delete the selected jobs, after a confirmation page."""
    form = await form_of(request)
    name = _one(form, "action") or ""
    if name not in JOB_ACTIONS:
        raise ValidationError(f"choose an action: {', '.join(JOB_ACTIONS)}")
    ids = sorted({int(value) for value in form.get("ids", []) if value.strip().isdigit()}, reverse=True)
    back = _return_path(form, "/jobs")
    if not ids:
        raise ValidationError("select at least one job")
    if len(ids) > MAX_BULK:
        raise ValidationError(f"{len(ids)} jobs selected; act on at most {MAX_BULK} at once")
    if _one(form, "confirm") != "yes":
        return render(request, "confirm.html", {"action": name, "ids": ids, "back": back})
    action, verb = JOB_ACTIONS[name]
    fs = dashboard(request).fs
    done = [job_id for job_id in ids if await action(fs, job_id)]
    path, _, query = back.partition("?")
    kept = [(k, v) for k, values in parse_qs(query).items() if k not in ("notice", "count") for v in values]
    notice = urlencode([*kept, ("notice", verb if done else "skipped"), ("count", len(done))])
    return RedirectResponse(f"{root(request)}{path}?{notice}", 303)


async def workflow_retry_action(request: Request) -> Response:
    """Retry a workflow's failed and cancelled jobs (the dependents held until they complete)."""
    await form_of(request)
    changed = await dashboard(request).fs.aretry_workflow(request.path_params["workflow_id"])
    return _back(request, "/jobs", notice="retried" if changed else "skipped", count=len(changed))


def _json_args(text: str) -> Any:
    """The cron form's `args` field, parsed (FlowStone checks it is an object)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValidationError(f"args must be a JSON object: {error}") from None


async def cron_add_action(request: Request) -> Response:
    """Store a cron entry from the cron page's form."""
    form = await form_of(request)
    await dashboard(request).fs.cron.aadd(
        _one(form, "name") or "",
        _one(form, "expression") or "",
        _one(form, "worker") or "",
        args=_json_args(_one(form, "args") or "{}"),
        timezone=_one(form, "timezone") or "UTC",
    )
    return _back(request, "/cron", notice="cron-added")


async def cron_update_action(request: Request) -> Response:
    """Change a stored cron entry's expression, args and time zone from its edit form
    (a field left empty stays as it was)."""
    form = await form_of(request)
    fields: dict[str, Any] = {
        name: value for name in ("expression", "timezone") if (value := _one(form, name))
    }
    if args := _one(form, "args"):
        fields["args"] = _json_args(args)
    await dashboard(request).fs.cron.aupdate(request.path_params["name"], **fields)
    return _back(request, "/cron", notice="cron-updated")


async def cron_action(request: Request) -> Response:
    """Pause, resume or delete a stored cron entry."""
    await form_of(request)
    cron, name, action = (
        dashboard(request).fs.cron,
        request.path_params["name"],
        request.path_params["action"],
    )
    if action == "pause":
        await cron.apause(name)
    elif action == "resume":
        await cron.aresume(name)
    elif action == "delete":
        if not await cron.adelete(name):
            raise ValidationError(f"no cron entry named {name!r}")
    else:
        raise HTTPException(404, f"no cron action {action!r}")
    notices = {"pause": "cron-paused", "resume": "cron-resumed", "delete": "cron-deleted"}
    return _back(request, "/cron", notice=notices[action])


async def queue_action(request: Request) -> Response:
    """Pause, resume or scale a queue on every node (or the one named); or reset it: clear
    its stored settings (every node's, or the one named)."""
    form = await form_of(request)
    fs, queue, name = dashboard(request).fs, request.path_params["queue"], request.path_params["action"]
    node = _one(form, "node") or None
    if name == "pause":
        await fs.apause_queue(queue, node=node)
    elif name == "resume":
        await fs.aresume_queue(queue, node=node)
    elif name == "scale":
        limit = _one(form, "limit") or ""
        if not limit.isdigit():
            raise ValidationError(f"limit must be a positive whole number; got {limit!r}")
        await fs.ascale_queue(queue, int(limit), node=node)
    elif name == "reset":
        await fs.areset_queue(queue, node=node)
    else:
        raise HTTPException(404, f"no queue action {name!r}")
    notices = {"pause": "paused", "resume": "resumed", "reset": "reset"}
    return _back(request, "/queues", notice=notices.get(name, "scaled"))


async def materialize_action(request: Request) -> Response:
    """Materialize one partition of an asset, with its upstream when asked."""
    form = await form_of(request)
    fs, name = dashboard(request).fs, request.path_params["name"]
    partition = _one(form, "partition") or None
    if _one(form, "upstream") == "yes":
        run_id = (await amaterialize_all(name, partition, fs=fs)).run_id
    else:
        run_id = (await amaterialize(name, partition, fs=fs)).run_id
    return _back(request, f"/runs/{quote(run_id, safe='')}")


async def backfill_action(request: Request) -> Response:
    """Materialize a range of an asset's partitions."""
    form = await form_of(request)
    fs, name = dashboard(request).fs, request.path_params["name"]
    start, end = _one(form, "start"), _one(form, "end")
    if not start or not end:
        raise ValidationError("a backfill needs a first and a last partition")
    result = await abackfill(name, start=start, end=end, fs=fs)
    return _back(request, f"/runs/{quote(result.run_id, safe='')}")
