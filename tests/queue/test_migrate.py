"""Migrations: idempotent, concurrent-safe, any valid schema name, invalid names refused."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from flowstone import FlowStone, Worker
from flowstone.queue.floor import parse_notification
from flowstone.queue.migrate import current_revision, migrate, script_location
from flowstone.testing import drain_queue


class Ok(Worker):
    queue = "migrate"

    def perform(self, job):
        return None


def heads() -> set[str]:
    from alembic.script import ScriptDirectory

    from flowstone.queue.migrate import alembic_config

    return set(ScriptDirectory.from_config(alembic_config("flowstone")).get_heads())


def test_migrate_twice_is_a_no_op(flowstone, flowstone_url):
    job = flowstone.insert(Ok.new({}))
    revision = current_revision(flowstone_url)
    assert revision in heads()
    flowstone.migrate()
    migrate(flowstone_url)
    assert current_revision(flowstone_url) == revision
    assert flowstone.get_job(job.id) is not None


def test_concurrent_migrations_of_a_fresh_schema(flowstone_url):
    barrier = threading.Barrier(4)

    def run(_: int) -> None:
        barrier.wait(timeout=30)
        migrate(flowstone_url, "fresh")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(run, range(4)))
    assert current_revision(flowstone_url, "fresh") in heads()


def test_concurrent_migrations_from_processes(flowstone_url):
    code = "import sys; from flowstone.queue.migrate import migrate; migrate(sys.argv[1], 'procs')"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, flowstone_url], stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    errors = [proc.communicate(timeout=120)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errors
    assert current_revision(flowstone_url, "procs") in heads()


def test_a_non_default_schema_works_end_to_end(flowstone_url):
    with FlowStone(flowstone_url, schema="tenant_2") as fs:
        fs.migrate()
        with psycopg.connect(flowstone_url, autocommit=True) as listener:
            listener.execute('LISTEN "tenant_2.jobs"')
            job = fs.insert(Ok.new({"x": 1}))
            payload = next(listener.notifies(timeout=10)).payload
            assert parse_notification(payload) == ("migrate", (0, job.scheduled_at, job.id))
        assert drain_queue("migrate", fs=fs).completed == 1
        assert fs.get_job(job.id).state == "completed"
    with psycopg.connect(flowstone_url) as conn:
        assert conn.execute("SELECT count(*) FROM tenant_2.jobs").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM flowstone.jobs").fetchone() == (0,)


@pytest.mark.parametrize("name", ["Bad", "drop table x;", "1abc", "a" * 64, ""])
def test_invalid_schema_names_are_refused(flowstone_url, name):
    with pytest.raises(ValueError, match="schema"):
        migrate(flowstone_url, name)
    with pytest.raises(ValueError, match="schema"):
        FlowStone(flowstone_url, schema=name)


def test_current_revision_of_an_unmigrated_schema(flowstone_url):
    assert current_revision(flowstone_url, "never") is None


def test_migrations_ship_with_the_package():
    assert (script_location() / "env.py").is_file()
