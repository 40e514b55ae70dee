"""Settings come from `FlowStone(...)`, else from FLOWSTONE_* environment variables, else
their defaults; a bad value names its setting in one line."""

from __future__ import annotations

import pytest

from flowstone import FlowStone, Job, ValidationError, Worker
from flowstone.queue.config import QueueConfig


def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWSTONE_POOL_SIZE", "3")
    monkeypatch.setenv("FLOWSTONE_SCHEMA", "elsewhere")
    monkeypatch.setenv("FLOWSTONE_NODE", "web-1")
    monkeypatch.setenv("FLOWSTONE_QUEUES", "mail=10,default=5")
    monkeypatch.setenv("FLOWSTONE_LOG_JOBS", "false")
    monkeypatch.setenv("FLOWSTONE_SOMETHING_ELSE", "ignored")
    fs = FlowStone()
    assert (fs.settings.pool_size, fs.schema, fs.settings.node, fs.settings.log_jobs) == (
        3,
        "elsewhere",
        "web-1",
        False,
    )
    assert fs.settings.queues == {"mail": QueueConfig(limit=10), "default": QueueConfig(limit=5)}
    monkeypatch.setenv("FLOWSTONE_QUEUES", '{"mail": {"limit": 2, "paused": true}}')
    assert FlowStone().settings.queues == {"mail": QueueConfig(limit=2, paused=True)}


def test_what_is_given_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWSTONE_POOL_SIZE", "3")
    monkeypatch.setenv("FLOWSTONE_SCHEMA", "elsewhere")
    monkeypatch.setenv("FLOWSTONE_QUEUES", "mail=10")
    fs = FlowStone("postgresql://h/db", schema="mine", pool_size=4, queues={"other": 1})
    assert (fs.settings.database_url, fs.schema, fs.settings.pool_size) == ("postgresql://h/db", "mine", 4)
    assert list(fs.settings.queues) == ["other"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FLOWSTONE_POOL_SIZE", "many", "pool_size: Input should be a valid integer"),
        ("FLOWSTONE_QUEUES", "mail=x", "FLOWSTONE_QUEUES limit for 'mail' must be a positive integer"),
        ("FLOWSTONE_DATABASE_URL", "mysql://u:pw@h/db", "unsupported database URL scheme 'mysql'"),
    ],
)
def test_a_bad_environment_value_is_one_line(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as raised:
        FlowStone()
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_configure_accepts_an_instance_as_the_default(flowstone_url: str) -> None:
    import flowstone
    from flowstone.queue.instance import get_default, set_default

    class Ping(Worker):
        name = "settings.Ping"

        def perform(self, job: Job) -> None:
            return None

    mine = FlowStone(flowstone_url, schema="flowstone")
    previous = FlowStone(flowstone_url)
    set_default(previous)
    try:
        assert flowstone.configure(mine) is mine and get_default() is mine
        job = Ping.enqueue({"n": 1})  # through the default: the instance given
        assert mine.get_job(job.id) is not None
        with pytest.raises(ValidationError, match=r"configure\(fs\) takes the instance alone"):
            flowstone.configure(mine, pool_size=3)
    finally:
        set_default(None)
        mine.close()
        previous.close()
