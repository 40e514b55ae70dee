"""The dashboard's guards: a request naming a host that is not allowed gets 400 from
every route (DNS rebinding), a POST from another site's page 403, a confirmation page's
way back leads only to a path of the dashboard, and no empty filter lists every job."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.routing import Mount, Route
from web_support import QUEUE, Client, Echo, client_for

from flowstone import FlowStone
from flowstone.errors import ValidationError
from flowstone.web import create_app

pytestmark = pytest.mark.anyio

FOREIGN = ("attacker.example:8765", "attacker.example", "localhost.attacker.example", "127.0.0.1.nip.io:8765")
MALFORMED = ("", "a@localhost", "localhost/x", "[::1", "localhost:port", "local host")


def requests_of(app: Any, job_id: int) -> list[tuple[str, str]]:
    """(method, path) for every route of the dashboard, its parameters filled in."""
    values = {
        "job_id:int": str(job_id),
        "queue": QUEUE,
        "name": "raw",
        "run_id": "run-1",
        "workflow_id": "wf-1",
    }
    actions = {"/jobs/{job_id:int}/{action}": "retry", "/queues/{queue}/{action}": "pause"}
    found: list[tuple[str, str]] = []
    for route in app.routes:
        if isinstance(route, Mount):
            found.append(("GET", f"{route.path}/dashboard.css"))
            continue
        assert isinstance(route, Route)
        path = re.sub(r"\{action\}", actions.get(route.path, ""), route.path)
        path = re.sub(r"\{([^}]+)\}", lambda m: values[m.group(1)], path)
        found.extend((method, path) for method in sorted(route.methods or ()) if method != "HEAD")
    return found


async def test_a_foreign_host_gets_400_from_every_route(client: Client, app_fs: FlowStone) -> None:
    job = await app_fs.ainsert(Echo.new({"secret": "s3cret"}))
    token = await client.token()
    app = create_app(app_fs)
    routes = requests_of(app, job.id)
    assert len(routes) >= 25 and ("POST", "/jobs/bulk") in routes and ("GET", "/events") in routes
    for method, path in routes:
        for host in (*FOREIGN, *MALFORMED):
            answer = await client.request(method, path, headers={"host": host}, data={"csrf": token})
            assert answer.status_code == 400, (method, path, host)
            assert "s3cret" not in answer.text and token not in answer.text
            assert "is not allowed here; add it with --allowed-host" in answer.text
    assert (await app_fs.aget_job(job.id)).state == "available"  # type: ignore[union-attr]


async def test_loopback_names_and_allowed_hosts_are_answered(app_fs: FlowStone) -> None:
    async with client_for(create_app(app_fs)) as http:
        for host in ("localhost", "localhost:8765", "127.0.0.1:8765", "[::1]:8765", "LOCALHOST."):
            assert (await http.get("/api/queues", headers={"host": host})).status_code == 200, host
        assert (await http.get("/api/queues", headers={"host": "dash.example.com"})).status_code == 400
    allowed = ["dash.example.com", "*.corp.example", "10.0.0.5", "[fd00::1]"]
    async with client_for(create_app(app_fs, allowed_hosts=allowed)) as http:
        for host in (
            "dash.example.com:443",
            "ops.corp.example",
            "10.0.0.5:8765",
            "[fd00::1]:80",
            "localhost",
        ):
            assert (await http.get("/api/queues", headers={"host": host})).status_code == 200, host
        for host in ("corp.example", "ops.corp.example.attacker", "example.com", "10.0.0.6"):
            assert (await http.get("/api/queues", headers={"host": host})).status_code == 400, host
    async with client_for(create_app(app_fs, allowed_hosts=["*"])) as http:
        assert (await http.get("/api/queues", headers={"host": "anything.example"})).status_code == 200
    with pytest.raises(ValidationError, match="allowed host 'a b' is not a host name"):
        create_app(app_fs, allowed_hosts=["a b"])


async def test_a_post_from_another_site_is_refused(client: Client, app_fs: FlowStone) -> None:
    job = await app_fs.ainsert(Echo.new({}))
    token = await client.token()
    path = f"/jobs/{job.id}/delete"
    for origin in ("http://attacker.example", "http://localhost.attacker.example", "null", "file://"):
        refused = await client.post(path, data={"csrf": token}, headers={"origin": origin})
        assert refused.status_code == 403 and "from another site" in refused.text, origin
    assert (await app_fs.aget_job(job.id)) is not None, "nothing was deleted"
    same = await client.post(path, data={"csrf": token}, headers={"origin": "http://localhost"})
    assert same.status_code == 303 and await app_fs.aget_job(job.id) is None


async def test_a_proxy_origin_given_in_allowed_hosts_may_post(app_fs: FlowStone) -> None:
    """Behind a proxy that does not pass the Host on, the browser's Origin is the public
    name: allowed once given; a loopback Origin on another port (another local site) not."""
    jobs = [await app_fs.ainsert(Echo.new({})) for _ in range(2)]
    async with client_for(create_app(app_fs, allowed_hosts=["dash.example.com"])) as http:
        token = await http.token()
        public = {"origin": "https://dash.example.com"}
        assert (
            await http.post(f"/jobs/{jobs[0].id}/delete", data={"csrf": token}, headers=public)
        ).status_code == 303
        other_port = {"origin": "http://localhost:3000"}
        refused = await http.post(f"/jobs/{jobs[1].id}/delete", data={"csrf": token}, headers=other_port)
        assert refused.status_code == 403
    assert await app_fs.aget_job(jobs[0].id) is None and await app_fs.aget_job(jobs[1].id) is not None


@pytest.mark.parametrize(
    "back",
    [
        "/\\evil.example",
        "//evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "https://evil.example",
        "javascript:alert(1)",
        "\\\\evil.example",
    ],
)
async def test_the_way_back_of_a_confirmation_stays_on_the_dashboard(
    client: Client, app_fs: FlowStone, back: str
) -> None:
    job = await app_fs.ainsert(Echo.new({}))
    asked = await client.submit("/jobs/bulk", [("action", "cancel"), ("back", back), ("ids", job.id)])
    assert asked.status_code == 200
    links = re.findall(r'<a href="([^"]*)">No, go back</a>', asked.text)
    assert links == ["/jobs"], links
    assert 'name="back" value="/jobs"' in asked.text
    kept = await client.submit(
        "/jobs/bulk", [("action", "cancel"), ("back", f"/jobs?queue={QUEUE}"), ("ids", job.id)]
    )
    assert re.findall(r'<a href="([^"]*)">No, go back</a>', kept.text) == [f"/jobs?queue={QUEUE}"]


async def test_an_empty_filter_never_lists_every_job(client: Client, app_fs: FlowStone) -> None:
    await app_fs.ainsert_all([Echo.new({"n": n}) for n in range(3)])
    for name in ("queue", "state", "worker", "tag", "args"):
        for value in ("", " "):
            refused = await client.get("/api/jobs", params={name: value})
            assert refused.status_code == 400, (name, value)
            assert refused.json() == {"error": f"the {name} filter is empty: give a value, or leave it out"}
    for args in (",", " , ", "{}"):
        for path in ("/jobs", "/api/jobs"):
            refused = await client.get(path, params={"args": args})
            assert refused.status_code == 400 and "args filter must name at least one key" in refused.text
    form = await client.get("/jobs", params={"queue": "", "state": "", "worker": "", "tag": "", "args": ""})
    assert form.status_code == 200, "the page's form sends every field: a blank one is no filter"
    assert len((await client.get("/api/jobs", params={"queue": QUEUE})).json()["jobs"]) == 3
