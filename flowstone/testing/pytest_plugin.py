"""pytest fixtures: every test gets its own migrated database (safe under pytest-xdist).

The server is FLOWSTONE_DATABASE_URL or, without it, the embedded PostgreSQL, started
once by the controlling process. Each xdist worker migrates one template database
(pytest-postgresql's janitor); each test clones it, which costs milliseconds.

Fixtures: `flowstone_url` (a fresh database's URL) and `flowstone` (a FlowStone on it,
also installed as the default instance for `Worker.enqueue` and the helpers).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pytest_postgresql.janitor import DatabaseJanitor

from flowstone import embedded
from flowstone.queue.instance import FlowStone, set_default
from flowstone.queue.migrate import migrate


def pytest_configure(config: pytest.Config) -> None:
    """Start the embedded server once, in the controller, and hand its URL to the workers."""
    if hasattr(config, "workerinput") or os.environ.get("FLOWSTONE_DATABASE_URL"):
        return
    os.environ["FLOWSTONE_DATABASE_URL"] = embedded.database_url()


def _janitor(base_url: str, dbname: str, **options: Any) -> DatabaseJanitor:
    info = conninfo_to_dict(base_url)
    return DatabaseJanitor(
        user=str(info.get("user") or "postgres"),
        host=str(info.get("host") or "localhost"),
        port=str(info.get("port") or 5432),
        password=info.get("password") or None,  # type: ignore[arg-type]
        dbname=dbname,
        maintenance_dbname=str(info.get("dbname") or "postgres"),
        **options,
    )


def database_url_for(base_url: str, dbname: str) -> str:
    """`base_url` pointed at another database on the same server."""
    return make_conninfo(base_url, dbname=dbname)


@pytest.fixture(scope="session")
def flowstone_server_url() -> str:
    """The server the tests run against."""
    return embedded.resolve_database_url()


@pytest.fixture(scope="session")
def flowstone_template(flowstone_server_url: str, worker_id: str) -> Iterator[str]:
    """A migrated template database for this xdist worker."""
    name = f"flowstone_tmpl_{worker_id}_{uuid.uuid4().hex[:8]}"
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


@pytest.fixture
def flowstone_url(flowstone_server_url: str, flowstone_template: str) -> Iterator[str]:
    """A fresh, migrated database for this test alone; dropped afterwards."""
    name = f"flowstone_test_{uuid.uuid4().hex[:12]}"
    with _janitor(flowstone_server_url, name, template_dbname=flowstone_template):
        yield database_url_for(flowstone_server_url, name)


@pytest.fixture
def flowstone(flowstone_url: str) -> Iterator[FlowStone]:
    """A FlowStone on this test's database, installed as the default instance."""
    instance = FlowStone(flowstone_url)
    set_default(instance)
    try:
        yield instance
    finally:
        set_default(None)
        instance.close()


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    """The xdist worker id (`master` without xdist)."""
    workerinput = getattr(request.config, "workerinput", None)
    return str(workerinput["workerid"]) if workerinput else "master"
