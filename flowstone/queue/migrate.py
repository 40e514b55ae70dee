"""Bring a database's FlowStone schema up to date with the alembic migrations we ship."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from psycopg import sql

from flowstone.queue.connecting import DEFAULT_CONNECT_TIMEOUT, connect_kwargs, probe
from flowstone.queue.pool import UNPREPARED
from flowstone.queue.validation import check_identifier

PACKAGE_DIR = Path(__file__).resolve().parent.parent
# alembic keeps the running migration in module globals (`alembic.context`), so two
# threads migrating at once would drive each other's connections and deadlock on the
# advisory lock; threads take turns here, processes at the advisory lock in env.py.
_MIGRATING = threading.Lock()


def script_location() -> Path:
    """The migrations folder: inside the installed wheel, or at the top of a checkout."""
    for candidate in (PACKAGE_DIR / "_migrations", PACKAGE_DIR.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("FlowStone's migrations are missing from this installation")


def quoted_schema(schema: str) -> str:
    """The schema name, validated and quoted for DDL."""
    return sql.Identifier(check_identifier(schema, "schema")).as_string(None)


def execute_ddl(template: str) -> None:
    """Run DDL from a migration with `{schema}` replaced by the quoted schema name."""
    schema = context.config.attributes["schema"]
    context.get_bind().exec_driver_sql(template.format(schema=quoted_schema(schema)))


def engine(database_url: str) -> sa.Engine:
    """A SQLAlchemy engine on psycopg 3 for any libpq URL or conninfo string, after one
    bounded connect that names what is wrong when the server cannot be used. Its
    statements are never prepared on the server (each runs about once), so it works
    through a transaction pooler too."""
    probe(database_url)
    options = {**connect_kwargs(database_url, DEFAULT_CONNECT_TIMEOUT), **UNPREPARED}
    return sa.create_engine(
        "postgresql+psycopg://",
        creator=lambda: psycopg.connect(database_url, **options),
        poolclass=sa.pool.NullPool,
    )


def alembic_config(schema: str) -> Config:
    """An alembic Config pointing at our migrations, for `schema`."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.attributes["schema"] = check_identifier(schema, "schema")
    return config


def migrate(database_url: str, schema: str = "flowstone", revision: str = "head") -> None:
    """Upgrade `schema` to `revision`; idempotent and safe to run from many processes."""
    config = alembic_config(schema)
    bind = engine(database_url)
    try:
        with _MIGRATING, bind.connect() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            connection.commit()
    finally:
        bind.dispose()


def current_revision(database_url: str, schema: str = "flowstone") -> str | None:
    """The revision the schema is at, or None when it was never migrated."""
    bind = engine(database_url)
    try:
        with bind.connect() as connection:
            exists = connection.execute(
                sa.text("SELECT to_regclass(:table)"), {"table": f"{quoted_schema(schema)}.alembic_version"}
            ).scalar()
            if exists is None:
                return None
            table = sa.table("alembic_version", sa.column("version_num"), schema=schema)
            return connection.execute(sa.select(table.c.version_num)).scalar()
    finally:
        bind.dispose()
