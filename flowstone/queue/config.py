"""Configuration of a FlowStone instance, validated by pydantic with errors that name the field."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flowstone.queue.validation import check_identifier, check_name


def default_node_name() -> str:
    """`host.pid`: unique per process, readable in `attempted_by` and the nodes table."""
    return f"{socket.gethostname()}.{os.getpid()}"


class Settings(BaseModel):
    """Everything a FlowStone instance needs; the runtime knobs have Oban's defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    database_url: str | None = None
    schema_name: str = "flowstone"
    data_dir: Path | None = None
    queues: dict[str, int] = Field(default_factory=dict)
    node: str = Field(default_factory=default_node_name)
    pool_size: int = Field(default=10, ge=1, le=200)
    poll_interval: float = Field(default=1.0, gt=0)
    stage_interval: float = Field(default=1.0, gt=0)
    heartbeat_interval: float = Field(default=1.0, gt=0)
    node_expiry: float = Field(default=10.0, gt=0)
    leader_lease: float = Field(default=10.0, gt=0)
    lifeline_interval: float = Field(default=2.0, gt=0)
    shutdown_grace: float = Field(default=15.0, ge=0)
    prune_max_age: float = Field(default=60.0 * 60 * 24, gt=0)
    prune_interval: float = Field(default=30.0, gt=0)
    prune_limit: int = Field(default=10_000, ge=1)

    @field_validator("schema_name")
    @classmethod
    def _schema(cls, value: str) -> str:
        return check_identifier(value, "schema")

    @field_validator("node")
    @classmethod
    def _node(cls, value: str) -> str:
        return check_name(value, "node")

    @field_validator("queues")
    @classmethod
    def _queues(cls, value: dict[str, int]) -> dict[str, int]:
        for name, limit in value.items():
            check_name(name, "queue")
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ValueError(f"queue {name!r} limit must be a positive integer; got {limit!r}")
        return value
