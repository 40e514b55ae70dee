"""The FlowStone of a Django project: built from `settings.FLOWSTONE`, on Django's database,
its inserts joining Django's transaction (`transaction.atomic()`).

Django's connection joins through `flowstone.queue.transactional` like any other kind:
its psycopg 3 connection is the one Django's transaction runs on. It belongs to the thread
(or async context) that opened it, so the async twins offload their work to it with
`sync_to_async`, as Django's own ORM does.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import psycopg
from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils.connection import ConnectionProxy

from flowstone.errors import ValidationError, ValidationTypeError
from flowstone.queue.config import Settings
from flowstone.queue.connecting import check_url
from flowstone.queue.database import Database
from flowstone.queue.instance import FlowStone, configured_default, set_default
from flowstone.queue.plan import Plan
from flowstone.queue.transactional import Joiner, register

T = TypeVar("T")

DJANGO_ONLY_OPTIONS = frozenset(
    {"pool", "server_side_binding", "isolation_level", "assume_role", "cursor_factory", "context"}
)
"""Keys of `DATABASES[...]["OPTIONS"]` that are Django's, not libpq's (left out of the URL)."""


def database_url(settings_dict: Mapping[str, Any]) -> str:
    """A `postgresql://` URL for one entry of Django's `DATABASES` (NAME, USER, PASSWORD,
    HOST — a directory is a Unix socket —, PORT and the libpq keys of OPTIONS)."""
    options = settings_dict.get("OPTIONS") or {}
    host = str(settings_dict.get("HOST") or "")
    socket = host.startswith("/")
    query = {"host": host} if socket else {}
    query.update({k: str(v) for k, v in options.items() if k not in DJANGO_ONLY_OPTIONS and v is not None})
    user = quote(str(settings_dict.get("USER") or ""), safe="")
    password = settings_dict.get("PASSWORD")
    auth = f"{user}:{quote(str(password), safe='')}@" if password else f"{user}@" if user else ""
    location = "" if socket else f"[{host}]" if ":" in host else host
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    name = quote(str(settings_dict.get("NAME") or "postgres"), safe="")
    return check_url(
        f"postgresql://{auth}{location}{port}/{name}" + (f"?{urlencode(query)}" if query else "")
    )


def _wrapper(conn: Any) -> BaseDatabaseWrapper:
    """The connection behind `conn` (`django.db.connection` is a proxy to the default one)."""
    found: BaseDatabaseWrapper = connections[conn.alias] if isinstance(conn, ConnectionProxy) else conn
    return found


def _postgresql(wrapper: BaseDatabaseWrapper) -> BaseDatabaseWrapper:
    if wrapper.vendor != "postgresql":
        raise ValidationError(
            f"FlowStone needs PostgreSQL: Django's database {wrapper.alias!r} is {wrapper.vendor}; "
            "point it at PostgreSQL or set FLOWSTONE['database_url']"
        )
    return wrapper


def _join(conn: Any) -> psycopg.Connection[Any]:
    """The psycopg connection Django's transaction runs on (opened if need be). Inside
    `atomic()` Django has turned autocommit off: statements join its transaction."""
    wrapper = _postgresql(_wrapper(conn))
    wrapper.validate_no_broken_transaction()  # what Django's own queries would refuse
    wrapper.ensure_connection()
    raw = wrapper.connection
    if not isinstance(raw, psycopg.Connection):
        raise ValidationTypeError(
            f"FlowStone joins Django's transaction through psycopg 3; Django's database "
            f"{wrapper.alias!r} runs on {type(raw).__module__} (pip install 'psycopg[binary]')"
        )
    return raw


async def _offload(call: Any) -> Any:
    """Run `call` where Django runs its ORM for async code (thread-sensitive)."""
    return await sync_to_async(call, thread_sensitive=True)()


JOINER = Joiner(
    lambda conn: isinstance(conn, BaseDatabaseWrapper | ConnectionProxy), join=_join, offload=_offload
)
"""`conn=` for Django's connections (`django.db.connection`, `connections["alias"]`)."""

_forget_joiner = register(JOINER)


class DjangoDatabase(Database):
    """The `Database` of a `DjangoFlowStone`: on Django's database `alias` (unless given a
    `database_url`), its plans joining Django's transaction inside `transaction.atomic()`."""

    def __init__(self, settings: Settings, alias: str, *, follows_django: bool) -> None:
        self.alias = alias
        self.follows_django = follows_django
        super().__init__(settings)

    @property
    def url(self) -> str:
        """`DATABASES[alias]` as a URL, or the `database_url` given."""
        if self.follows_django:
            return database_url(_postgresql(connections[self.alias]).settings_dict)
        return super().url

    def override(self, **settings: Any) -> None:
        """As `Database.override`; a `database_url` given stops following Django's."""
        if settings.get("database_url") is not None:
            self.follows_django = False
        super().override(**settings)

    def execute(self, plan: Plan[T], conn: Any = None, *, atomic: bool = True) -> T:
        """As `Database.execute`; given no `conn` inside `transaction.atomic()` (in this
        thread, on Django's database), in Django's transaction."""
        if conn is None and self.in_atomic_block():
            conn = connections[self.alias]
        return super().execute(plan, conn, atomic=atomic)

    def in_atomic_block(self) -> bool:
        """Whether this thread's code runs inside `transaction.atomic()` on FlowStone's
        database (always False when `database_url` names another)."""
        return self.follows_django and bool(connections[self.alias].in_atomic_block)


class DjangoFlowStone(FlowStone):
    """A FlowStone on the database of Django's connection `alias` (unless given a
    `database_url`) whose inserts join Django's transaction when called inside
    `transaction.atomic()`.

    The database URL is read from Django's settings whenever a connection is made, so a
    test database Django switched to (`test_<NAME>`) is the one used."""

    def __init__(self, alias: str = DEFAULT_DB_ALIAS, **options: Any) -> None:
        """`options`: the keyword arguments of `FlowStone(...)` (`settings.FLOWSTONE`)."""
        self.alias = alias
        self._follows_django = options.get("database_url") is None
        super().__init__(**options)

    def _database(self, settings: Settings) -> Database:
        return DjangoDatabase(settings, self.alias, follows_django=self._follows_django)


_lock = threading.Lock()
_instance: DjangoFlowStone | None = None


def get_flowstone() -> DjangoFlowStone:
    """The project's instance, built from `settings.FLOWSTONE` on first use (Django's
    start builds it) and installed as the default instance — the one `Worker.enqueue` and
    `flowstone.materialize` use — unless another was configured."""
    global _instance
    with _lock:
        if _instance is None:
            _instance = DjangoFlowStone(**_options())
            if configured_default() is None or isinstance(configured_default(), DjangoFlowStone):
                set_default(_instance)
        return _instance


def _options() -> dict[str, Any]:
    from django.conf import settings

    options = getattr(settings, "FLOWSTONE", {})
    if not isinstance(options, Mapping):
        raise ValidationError(f"settings.FLOWSTONE must be a dict of FlowStone options; got {options!r}")
    return dict(options)


def reset() -> None:
    """Close the instance's connection pool and build it again from the settings (done
    on Django's `setting_changed` for FLOWSTONE or DATABASES, e.g. `override_settings`)."""
    global _instance
    with _lock:
        old, _instance = _instance, None
    if old is not None:
        old.close()
    get_flowstone()
