"""Configuration of a FlowStone instance, validated by pydantic with errors that name the field."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from flowstone.errors import one_line
from flowstone.queue.connecting import DEFAULT_CONNECT_TIMEOUT, check_url
from flowstone.queue.validation import check_identifier, check_name


def default_node_name() -> str:
    """`host.pid`: unique per process, readable in `attempted_by` and the nodes table."""
    return f"{socket.gethostname()}.{os.getpid()}"


MAX_LIMIT = 10_000
"""The most jobs one queue may run at once on one node."""

MAX_GLOBAL_LIMIT = 1_000_000
MAX_PERIOD = 366 * 24 * 3600.0


class RateLimit(BaseModel):
    """At most `allowed` jobs started in any window of `period` seconds, cluster-wide."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allowed: int = Field(ge=1, le=1_000_000_000)
    period: float = Field(gt=0, le=MAX_PERIOD)

    @property
    def bucket(self) -> float:
        """The width of one bucket of the starts ledger: a twentieth of the period, so a
        window is counted with at most 5 % of it too much (never too little)."""
        return self.period / 20


class LimitPartition(BaseModel):
    """Apply a queue's global and rate limits per distinct value of these args keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    args: tuple[str, ...] = Field(min_length=1, max_length=8)

    @field_validator("args")
    @classmethod
    def _keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_name(key, "partition args key") for key in value)


class QueueConfig(BaseModel):
    """How a node runs one queue: at most `limit` jobs at once, claiming unless `paused`.

    Cluster-wide options, enforced in the claim itself (every node running the queue must
    be given the same ones): `global_limit` (at most so many executing on all nodes
    together), `rate_limit` (at most `allowed` started per `period` seconds) and
    `partition` (apply both per value of some args keys, e.g. per tenant).

    `executor="process"` runs the queue's sync jobs in child processes (a worker's own
    `executor` wins), recycling a child after `max_tasks_per_child` jobs or once a job
    leaves its resident memory above `max_memory_per_child` MiB (these two apply to every
    child of the queue, whoever chose the process executor).

    `queues={"mail": 10}` is short for `{"mail": QueueConfig(limit=10)}`; a dict of the
    same fields works too. Unknown options are refused by name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: int = Field(ge=1, le=MAX_LIMIT)
    paused: bool = False
    global_limit: int | None = Field(default=None, ge=1, le=MAX_GLOBAL_LIMIT)
    rate_limit: RateLimit | None = None
    partition: LimitPartition | None = None
    executor: Literal["thread", "process"] = "thread"
    max_tasks_per_child: int | None = Field(default=None, ge=1)
    max_memory_per_child: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _partitioned(self) -> QueueConfig:
        if self.partition is not None and not self.limited:
            raise ValueError("partition applies to global_limit or rate_limit; give one of them")
        return self

    @property
    def limited(self) -> bool:
        """Whether claims must respect a cluster-wide limit (global or rate)."""
        return self.global_limit is not None or self.rate_limit is not None

    @classmethod
    def of(cls, name: str, value: int | QueueConfig | Mapping[str, Any]) -> QueueConfig:
        """The config a `queues` entry stands for."""
        check_name(name, "queue")
        if isinstance(value, QueueConfig):
            return value
        if isinstance(value, Mapping):
            try:
                return cls.model_validate(dict(value))
            except ValidationError as error:
                raise ValueError(f"queue {name!r}: {one_line(error)}") from None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"queue {name!r} limit must be a positive integer; got {value!r}")
        return cls(limit=value)


Pooler = Literal["none", "transaction"]
"""What stands between FlowStone and the server at `database_url`: nothing (or a pooler in
session mode), or a pooler in transaction mode (PgBouncer's `pool_mode=transaction`), where
consecutive transactions of one connection may run on different server connections."""

TestingMode = Literal["disabled", "inline", "manual"]
"""How jobs run (`flowstone.testing.with_testing_mode` switches it per test): `inline`
runs each job in the caller when it is inserted, touching no database; `manual` inserts
jobs but nodes run no queues and no plugins (run them with `drain_queue`)."""

QueuesOption = Mapping[str, "int | QueueConfig | Mapping[str, Any]"]


def queue_configs(queues: QueuesOption | None) -> dict[str, QueueConfig]:
    """Every entry of a `queues` option as a QueueConfig."""
    return {name: QueueConfig.of(name, value) for name, value in (queues or {}).items()}


def parse_queues(text: str, what: str = "--queues") -> dict[str, int]:
    """`assets=10,default=5` → {"assets": 10, "default": 5} (the CLI's and FLOWSTONE_QUEUES' form)."""
    queues: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, limit = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{what} entry {part!r} must look like name=limit")
        if not limit.strip().isdigit() or int(limit) < 1:
            raise ValueError(f"{what} limit for {name.strip()!r} must be a positive integer; got {limit!r}")
        queues[name.strip()] = int(limit)
    if not queues:
        raise ValueError(f"{what} names no queue")
    return queues


class Settings(BaseSettings):
    """Everything a FlowStone instance needs; the runtime knobs have Oban's defaults.

    Each setting not given to `FlowStone(...)` is read from the environment variable
    FLOWSTONE_<NAME> (FLOWSTONE_SCHEMA for `schema_name`; FLOWSTONE_QUEUES as
    `mail=10,default=5` or JSON), then falls back to its default.

    Behind a transaction pooler set `pooler="transaction"`: no server-side prepared
    statements, no session settings. `direct_url` (the server itself, bypassing the
    pooler) then serves what needs a session — LISTEN, the asset partition locks,
    migrations; without it nodes and waiters poll every `poll_interval`."""

    model_config = SettingsConfigDict(
        frozen=True, extra="forbid", env_prefix="FLOWSTONE_", populate_by_name=True
    )

    database_url: str | None = None
    pooler: Pooler = "none"
    direct_url: str | None = None
    schema_name: str = Field(default="flowstone", validation_alias=AliasChoices("flowstone_schema"))
    data_dir: Path | None = None
    queues: Annotated[dict[str, QueueConfig], NoDecode] = Field(default_factory=dict)
    node: str = Field(default_factory=default_node_name)
    pool_size: int = Field(default=10, ge=1, le=200)
    connect_timeout: float = Field(default=DEFAULT_CONNECT_TIMEOUT, gt=0)
    poll_interval: float = Field(default=1.0, gt=0)
    stage_interval: float = Field(default=1.0, gt=0)
    heartbeat_interval: float = Field(default=1.0, gt=0)
    node_expiry: float = Field(default=10.0, gt=0)
    leader_lease: float = Field(default=10.0, gt=0)
    lifeline_interval: float = Field(default=2.0, gt=0)
    lifeline_limit: int = Field(default=5000, ge=1)
    cron_interval: float = Field(default=1.0, gt=0)
    shutdown_grace: float = Field(default=15.0, ge=0)
    statement_timeout: float = Field(default=30.0, gt=0)
    prune_max_age: float = Field(default=60.0 * 60 * 24, gt=0)
    prune_interval: float = Field(default=30.0, gt=0)
    prune_limit: int = Field(default=10_000, ge=1)
    prune_budget: float = Field(default=10.0, gt=0)
    log_jobs: bool = True
    async_commit: bool = False
    """Producers' claims and acknowledgements commit without waiting for the WAL flush
    (`synchronous_commit = off` on their connections). Faster; a *server* crash may then
    lose the last ~0.6 s of them, and those jobs run again (at-least-once still holds)."""
    progress_interval: float = Field(default=1.0, gt=0)
    testing: TestingMode = "disabled"
    chaos: float = Field(default=0.0, ge=0.0, le=1.0)
    """The share of jobs a node fails before `perform` (a `ChaosError`), to rehearse
    failures on real workers and staging; 0 (off) unless FLOWSTONE_CHAOS says otherwise."""
    chaos_seed: int | None = None
    """Seeds the node's chaos draws (FLOWSTONE_CHAOS_SEED), for a reproducible sequence."""

    @field_validator("database_url", "direct_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @field_validator("schema_name")
    @classmethod
    def _schema(cls, value: str) -> str:
        return check_identifier(value, "schema")

    @field_validator("node")
    @classmethod
    def _node(cls, value: str) -> str:
        return check_name(value, "node")

    @field_validator("queues", mode="before")
    @classmethod
    def _queues(cls, value: Any) -> dict[str, QueueConfig]:
        if isinstance(value, str):  # from FLOWSTONE_QUEUES
            value = (
                json.loads(value)
                if value.lstrip().startswith("{")
                else parse_queues(value, "FLOWSTONE_QUEUES")
            )
        if not isinstance(value, Mapping):
            raise ValueError(f"queues must be a mapping of queue name to limit; got {value!r}")
        return queue_configs(value)
