"""The shop project — a real Django project (`djproject`, the `shop` app, `manage.py`) — on a
real PostgreSQL, through pytest-django's clients.

Django is configured by the `django_project` fixture when the first test of this directory
runs, never through DJANGO_SETTINGS_MODULE: pytest-django stays inert for the rest of the
suite (and for its subprocesses). Each test gets a database of its own, cloned from a
template that FlowStone's migrations and then Django's (auth, sessions, shop) made."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from flowstone.testing.pytest_plugin import cloned_database


@pytest.fixture(scope="session")
def django_project() -> None:
    """Django set up with the shop's settings, in this process."""
    import django
    from django.conf import settings

    if not settings.configured:
        from djproject import settings as shop_settings

        settings.configure(**{name: value for name, value in vars(shop_settings).items() if name.isupper()})
        django.setup()


def point_django_at(url: str) -> None:
    """Move Django's default database (and so FlowStone's instance) to `url`."""
    from django.db import connections

    from flowstone.contrib.django import reset

    info = conninfo_to_dict(url)
    connections.close_all()
    connections["default"].settings_dict.update(
        NAME=info["dbname"],
        USER=info.get("user") or "",
        PASSWORD=info.get("password") or "",
        HOST=info.get("host") or "",
        PORT=str(info.get("port") or ""),
    )
    reset()


def set_template(server_url: str, name: str, on: bool) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} WITH is_template {}").format(sql.Identifier(name), on))


@pytest.fixture(scope="session")
def shop_template(flowstone_server_url: str, flowstone_template: str, django_project: None) -> Iterator[str]:
    """A database with FlowStone's tables and Django's (migrated once per test process)."""
    from django.core.management import call_command
    from django.db import connections

    with cloned_database(flowstone_server_url, flowstone_template) as url:
        point_django_at(url)
        call_command("migrate", verbosity=0)
        connections.close_all()
        name = str(conninfo_to_dict(url)["dbname"])
        set_template(flowstone_server_url, name, True)
        try:
            yield name
        finally:
            set_template(flowstone_server_url, name, False)


@pytest.fixture
def shop_url(flowstone_server_url: str, shop_template: str) -> Iterator[str]:
    """This test's database, Django and FlowStone pointed at it; ATOMIC_REQUESTS off."""
    from django.db import connections

    with cloned_database(flowstone_server_url, shop_template) as url:
        point_django_at(url)
        try:
            yield url
        finally:
            connections["default"].settings_dict["ATOMIC_REQUESTS"] = False
            connections.close_all()
            from flowstone.contrib.django import get_flowstone

            get_flowstone().close()
