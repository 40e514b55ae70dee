"""pytest fixtures: every test gets its own migrated database (safe under pytest-xdist).

pytest loads this plugin in every project FlowStone is installed into, so loading it costs
nothing: it imports only pytest, starts no server and writes no file. The first test that
requests a FlowStone fixture pays for it: the server is FLOWSTONE_DATABASE_URL or, without
it, the embedded PostgreSQL (started once; xdist workers starting it together take turns
at a lock in its data directory). Each xdist worker migrates one template database
(pytest-postgresql's janitor, from `pip install 'flowstone[testing]'`); each test clones
it, which costs milliseconds.

Fixtures: `flowstone_url` (a fresh database's URL) and `flowstone` (a FlowStone on it,
also installed as the default instance for `Worker.enqueue` and the helpers);
`cloned_database` gives more fresh databases (one per Hypothesis example).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_postgresql.janitor import DatabaseJanitor

    from flowstone.queue.instance import FlowStone

MISSING_EXTRA = "FlowStone's pytest fixtures need pytest-postgresql: pip install 'flowstone[testing]'"


def _janitor(base_url: str, dbname: str, **options: Any) -> DatabaseJanitor:
    try:
        from pytest_postgresql.janitor import DatabaseJanitor
    except ImportError:
        pytest.fail(MISSING_EXTRA, pytrace=False)
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(base_url)
    return DatabaseJanitor(
        user=str(info.get("user") or "postgres"),
        host=str(info.get("host") or "localhost"),
        port=str(info.get("port") or 5432),
        password=str(info["password"]) if info.get("password") else None,
        dbname=dbname,
        maintenance_dbname=str(info.get("dbname") or "postgres"),
        **options,
    )


def database_url_for(base_url: str, dbname: str) -> str:
    """`base_url` pointed at another database on the same server."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(base_url, dbname=dbname)


@pytest.fixture(scope="session")
def flowstone_server_url() -> str:
    """The server the tests run against (started on first use when it is the embedded one)."""
    from flowstone import embedded
    from flowstone.errors import FlowStoneError

    try:
        return embedded.resolve_database_url()
    except FlowStoneError as error:
        pytest.fail(error.message, pytrace=False)


@pytest.fixture(scope="session")
def flowstone_template(flowstone_server_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated template database for this xdist worker."""
    from flowstone.queue.migrate import migrate

    workerinput = getattr(request.config, "workerinput", None)
    worker = str(workerinput["workerid"]) if workerinput else "master"
    name = f"flowstone_tmpl_{worker}_{uuid.uuid4().hex[:8]}"
    janitor = _janitor(flowstone_server_url, name)
    janitor.init()
    try:
        migrate(database_url_for(flowstone_server_url, name))
        with janitor.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{name}" WITH is_template true')
        janitor.as_template = True
        yield name
    finally:
        janitor.drop()


@contextmanager
def cloned_database(server_url: str, template: str) -> Iterator[str]:
    """A fresh database cloned from the migrated `template`, dropped afterwards: what
    `flowstone_url` gives a test, for code that needs more than one (a Hypothesis
    example each: `cloned_database(flowstone_server_url, flowstone_template)`)."""
    name = f"flowstone_test_{uuid.uuid4().hex[:12]}"
    with _janitor(server_url, name, template_dbname=template):
        yield database_url_for(server_url, name)


@pytest.fixture
def flowstone_url(flowstone_server_url: str, flowstone_template: str) -> Iterator[str]:
    """A fresh, migrated database for this test alone; dropped afterwards."""
    with cloned_database(flowstone_server_url, flowstone_template) as url:
        yield url


@pytest.fixture
def flowstone(flowstone_url: str) -> Iterator[FlowStone]:
    """A FlowStone on this test's database, installed as the default instance."""
    from flowstone.queue.instance import FlowStone, set_default

    instance = FlowStone(flowstone_url)
    set_default(instance)
    try:
        yield instance
    finally:
        set_default(None)
        instance.close()
