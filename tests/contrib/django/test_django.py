"""`flowstone.contrib.django` in a real Django project: jobs commit and roll back with
Django's transaction (explicit `atomic()`, ATOMIC_REQUESTS, sync and async views), the
instance comes from Django's settings, and the dashboard lets only staff in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from psycopg.conninfo import conninfo_to_dict
from shop_support import jobs, orders

from flowstone import FlowStoneError, Worker

pytestmark = pytest.mark.usefixtures("django_project")


JSON = "application/json"


class RollbackError(Exception):
    """Raised inside an atomic block to roll it back."""


def ship(order_id: int) -> Any:
    from shop.workers import ShipOrder

    return ShipOrder.new({"order_id": order_id})


# -- the instance -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {"NAME": "shop", "USER": "app", "PASSWORD": "p@ss:/w", "HOST": "db.internal", "PORT": "6432"},
            {"dbname": "shop", "user": "app", "password": "p@ss:/w", "host": "db.internal", "port": "6432"},
        ),
        (
            {"NAME": "shop", "USER": "", "PASSWORD": "", "HOST": "/var/run/postgresql", "PORT": ""},
            {"dbname": "shop", "host": "/var/run/postgresql"},
        ),
        (
            {
                "NAME": "shop",
                "HOST": "::1",
                "PORT": 5432,
                "OPTIONS": {"sslmode": "require", "pool": True, "server_side_binding": True},
            },
            {"dbname": "shop", "host": "::1", "port": "5432", "sslmode": "require"},
        ),
        ({"NAME": None}, {"dbname": "postgres"}),
    ],
    ids=["tcp", "socket", "options", "no-name"],
)
def test_the_database_url_is_djangos_database(entry: dict[str, Any], expected: dict[str, str]) -> None:
    from flowstone.contrib.django import database_url

    url = database_url(entry)
    assert url.startswith("postgresql://")
    assert conninfo_to_dict(url) == expected


def test_the_instance_comes_from_the_settings(shop_url: str) -> None:
    from django.apps import apps
    from django.db import connection
    from django.test import override_settings

    import flowstone.contrib.django as contrib
    from flowstone.queue.instance import get_default

    fs = contrib.fs
    assert fs is apps.get_app_config("flowstone").fs is get_default(), "also what Worker.enqueue uses"
    assert conninfo_to_dict(fs.database_url)["dbname"] == connection.settings_dict["NAME"]
    assert set(fs.settings.queues) == {"shop"} and fs.settings.poll_interval == 0.2
    with override_settings(FLOWSTONE={"schema": "elsewhere", "database_url": shop_url}):
        assert contrib.fs is not fs and contrib.fs.schema == "elsewhere"
        assert not contrib.fs.database.in_atomic_block(), "another database: never Django's transaction"
    with pytest.raises(FlowStoneError) as bad, override_settings(FLOWSTONE={"queues": {"shop": "many"}}):
        pass  # bad settings fail where they are given
    assert "invalid FlowStone settings" in str(bad.value) and "queues" in str(bad.value)
    assert contrib.fs.settings.queues["shop"].limit == 2, "the project's settings again"


def test_a_database_that_is_not_postgresql_is_refused_in_one_line(shop_url: str) -> None:
    from django.db import connections

    from flowstone.contrib.django import DjangoFlowStone, get_flowstone

    with pytest.raises(
        FlowStoneError, match="FlowStone needs PostgreSQL: Django's database 'legacy' is sqlite"
    ):
        DjangoFlowStone(alias="legacy").database_url  # noqa: B018
    with pytest.raises(FlowStoneError, match="needs PostgreSQL"):
        get_flowstone().insert(ship(1), conn=connections["legacy"])
    assert jobs(shop_url) == 0


# -- transactions ---------------------------------------------------------------------------


def _enqueue(order_id: int) -> None:
    """The default path: `Worker.enqueue` on the project's instance."""
    from shop.workers import ShipOrder

    ShipOrder.enqueue({"order_id": order_id})


def _insert_on_connection(order_id: int) -> None:
    from django.db import connection

    from flowstone.contrib.django import get_flowstone

    get_flowstone().insert(ship(order_id), conn=connection)


INSERTS: dict[str, Callable[[int], None]] = {"enqueue": _enqueue, "conn=connection": _insert_on_connection}


@pytest.mark.parametrize("insert", INSERTS.values(), ids=INSERTS)
def test_an_atomic_block_commits_or_rolls_back_its_job_with_its_rows(
    shop_url: str, insert: Callable[[int], None]
) -> None:
    from django.db import transaction
    from shop.models import Order

    with transaction.atomic():
        insert(Order.objects.create(item="kept").id)
        assert jobs(shop_url) == 0, "not visible before the commit: it is in Django's transaction"
    assert (orders(shop_url), jobs(shop_url)) == (1, 1)

    with pytest.raises(RollbackError), transaction.atomic():
        insert(Order.objects.create(item="dropped").id)
        raise RollbackError
    assert (orders(shop_url), jobs(shop_url)) == (1, 1), "the rollback dropped the job with the order"

    with transaction.atomic():
        with pytest.raises(RollbackError), transaction.atomic():  # a savepoint
            insert(Order.objects.create(item="inner").id)
            raise RollbackError
        insert(Order.objects.create(item="outer").id)
    assert (orders(shop_url), jobs(shop_url)) == (2, 2), "the savepoint's job went with the savepoint"


def test_outside_a_block_an_insert_commits_at_once(shop_url: str) -> None:
    from django.db import connection

    from flowstone.contrib.django import get_flowstone

    fs = get_flowstone()
    job = fs.insert(ship(1))
    assert job.args == {"order_id": 1} and jobs(shop_url) == 1
    job = fs.insert(ship(2), conn=connection)  # Django's connection in autocommit
    assert job.args == {"order_id": 2} and job.inserted_at.tzinfo is not None
    assert jobs(shop_url) == 2


def test_jobs_read_back_through_djangos_connection_decode_as_flowstones(shop_url: str) -> None:
    """Django's connection loads jsonb as text and binds on the client; FlowStone's rows
    still come back as FlowStone's (args a dict, times aware)."""
    from django.db import transaction

    from flowstone.contrib.django import get_flowstone

    fs = get_flowstone()
    with transaction.atomic():
        job = fs.insert(ship(7))
        again = fs.get_job(job.id)  # in the block: sees its own uncommitted job
    assert again is not None and again.args == {"order_id": 7} and again.inserted_at == job.inserted_at


def test_a_broken_transaction_is_refused_as_django_refuses_it(shop_url: str) -> None:
    from django.db import DatabaseError, connection, transaction

    from flowstone.contrib.django import get_flowstone

    with pytest.raises(Exception, match="An error occurred in the current transaction"), transaction.atomic():
        with pytest.raises(DatabaseError), connection.cursor() as cursor:
            cursor.execute("SELECT 1/0")
        connection.needs_rollback = True  # what atomic() marks after a caught error
        get_flowstone().insert(ship(1))
    assert jobs(shop_url) == 0


# -- views ------------------------------------------------------------------------------------


@pytest.mark.parametrize("atomic_requests", [False, True], ids=["plain", "ATOMIC_REQUESTS"])
def test_a_view_that_fails_leaves_no_job(shop_url: str, client: Any, atomic_requests: bool) -> None:
    from django.db import connections
    from shop.views import RefusedError

    connections["default"].settings_dict["ATOMIC_REQUESTS"] = atomic_requests
    assert client.post("/orders/", {"item": "ok"}, content_type=JSON).status_code == 200
    with pytest.raises(RefusedError):
        client.post("/orders/", {"item": "no", "fail": True}, content_type=JSON)
    assert (orders(shop_url), jobs(shop_url)) == (1, 1)

    # A view with no block of its own is atomic only under ATOMIC_REQUESTS.
    with pytest.raises(RefusedError):
        client.post("/orders/plain/", {"item": "half", "fail": True}, content_type=JSON)
    expected = 1 if atomic_requests else 2
    assert (orders(shop_url), jobs(shop_url)) == (expected, expected)


@pytest.mark.anyio
async def test_an_async_view_commits_or_rolls_back_its_job(shop_url: str, async_client: Any) -> None:
    from asgiref.sync import sync_to_async
    from django.db import connections
    from shop.views import RefusedError

    from flowstone.contrib.django import get_flowstone

    try:
        ok = await async_client.post("/orders/async/", {"item": "ok"}, content_type=JSON)
        assert ok.status_code == 200
        with pytest.raises(RefusedError):
            await async_client.post("/orders/async/", {"item": "no", "fail": True}, content_type=JSON)
        assert (orders(shop_url), jobs(shop_url)) == (1, 1)

        direct = await async_client.post("/orders/async/direct/", {"item": "x"}, content_type=JSON)
        assert direct.status_code == 200 and (orders(shop_url), jobs(shop_url)) == (2, 2)
    finally:
        await sync_to_async(connections.close_all)()
        await get_flowstone().aclose()


@pytest.mark.anyio
async def test_ainsert_on_djangos_connection_joins_the_block_open_in_djangos_thread(shop_url: str) -> None:
    """The async twin runs in the thread that owns Django's connection (`sync_to_async`):
    inside an atomic block open there it joins it, as the sync insert does."""
    from asgiref.sync import async_to_sync, sync_to_async
    from django.db import connection, connections, transaction
    from shop.models import Order

    from flowstone.contrib.django import get_flowstone

    fs = get_flowstone()

    def in_a_block(fail: bool) -> None:
        with transaction.atomic():
            order = Order.objects.create(item="async")
            async_to_sync(fs.ainsert)(ship(order.id), conn=connection)
            if fail:
                raise RollbackError

    try:
        with pytest.raises(RollbackError):
            await sync_to_async(in_a_block)(True)
        assert (orders(shop_url), jobs(shop_url)) == (0, 0)
        await sync_to_async(in_a_block)(False)
        assert (orders(shop_url), jobs(shop_url)) == (1, 1)
    finally:
        await sync_to_async(connections.close_all)()
        await fs.aclose()


# -- the dashboard ------------------------------------------------------------------------------


def _session_cookie(username: str, *, staff: bool) -> dict[str, str]:
    """The session cookie of a new user signed in through Django."""
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.test import Client

    client = Client()
    client.force_login(User.objects.create_user(username, password="secret-password", is_staff=staff))
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}


@pytest.mark.anyio
async def test_the_dashboard_is_for_staff_only(shop_url: str) -> None:
    from asgiref.sync import sync_to_async
    from django.core.asgi import get_asgi_application

    from flowstone.contrib.django import PrefixRouter, get_flowstone, staff_dashboard

    staff = await sync_to_async(_session_cookie)("boss", staff=True)
    member = await sync_to_async(_session_cookie)("member", staff=False)
    app = PrefixRouter(get_asgi_application(), {"/flowstone": staff_dashboard(read_only=True)})

    def browser(cookies: dict[str, str] | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", cookies=cookies
        )

    try:
        async with browser() as anonymous, browser(member) as member_, browser(staff) as staff_:
            refused = await anonymous.get("/flowstone/queues?state=available")
            assert refused.status_code == 302
            assert refused.headers["location"] == "/login/?next=/flowstone/queues%3Fstate%3Davailable"
            assert (await member_.get("/flowstone/api/queues")).status_code == 403
            async with browser({"sessionid": "forged"}) as forged:
                assert (await forged.get("/flowstone/api/queues")).status_code == 302

            page = await staff_.get("/flowstone/queues")
            assert page.status_code == 200 and 'href="/flowstone/jobs' in page.text, "links under the prefix"
            foreign = await staff_.get("/flowstone/queues", headers={"host": "attacker.example"})
            assert foreign.status_code == 400, "hosts outside Django's ALLOWED_HOSTS are refused"
            api = await staff_.get("/flowstone/api/queues")
            assert api.status_code == 200 and "queues" in api.json()
            assert (await staff_.get("/flowstone")).status_code in (302, 307)

            # Everything else is Django's.
            placed = await anonymous.post("/orders/", json={"item": "via-router"})
            assert placed.status_code == 200 and "order" in placed.json()
            assert (await anonymous.get("/flowstonex/")).status_code == 404
    finally:
        await get_flowstone().aclose()


def test_prefixes_must_be_paths() -> None:
    from flowstone.contrib.django import PrefixRouter

    for bad in ("flowstone", "/flowstone/"):
        with pytest.raises(ValueError, match="prefix"):
            PrefixRouter(lambda *a: None, {bad: lambda *a: None})  # type: ignore[arg-type,misc]


def test_workers_of_installed_apps_are_known() -> None:
    from shop.graph import SHOP_ASSETS

    from flowstone import default_registry

    assert default_registry.get("shop.ShipOrder") is not None
    assert issubclass(default_registry.get("shop.ShipOrder") or object, Worker)
    assert "shop_order_count" in SHOP_ASSETS, "shop/assets.py was imported when Django started"
