"""Injected failures for tests (`flowstone.testing.with_chaos`): an executor built inside
the block wraps `perform` with a `Chaos`; one built outside it runs `perform` as is, so
production's hot path carries no check."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from flowstone.errors import ValidationError

if TYPE_CHECKING:
    from flowstone.queue.config import Settings

A = TypeVar("A")
B = TypeVar("B")


class ChaosError(Exception):
    """A failure injected before `perform` by `flowstone.testing.with_chaos`, or on a node
    by its `chaos` setting (FLOWSTONE_CHAOS, `flowstone worker --chaos`)."""


@dataclass
class Chaos:
    """Fail a share of executions, reproducibly from `seed`."""

    failure_rate: float
    seed: int | None = None
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValidationError(f"failure_rate must be between 0 and 1; got {self.failure_rate!r}")
        self.rng = random.Random(self.seed)  # test chaos, not crypto

    def strike(self) -> bool:
        """True when this execution should fail."""
        return self.rng.random() < self.failure_rate

    def wrap(self, perform: Callable[[A, B], Awaitable[object]]) -> Callable[[A, B], Awaitable[object]]:
        """`perform`, failing with a ChaosError before it runs when this chaos strikes."""

        async def chaotic(worker: A, job: B) -> object:
            if self.strike():
                raise ChaosError(
                    f"chaos: a failure injected before perform (failure rate {self.failure_rate})"
                )
            return await perform(worker, job)

        return chaotic


_chaos: ContextVar[Chaos | None] = ContextVar("flowstone_chaos", default=None)


def node_chaos(settings: Settings) -> Chaos | None:
    """The chaos a node's `chaos` setting asks for (FLOWSTONE_CHAOS, `--chaos`), if any."""
    return Chaos(settings.chaos, settings.chaos_seed) if settings.chaos > 0 else None


def active() -> Chaos | None:
    """The chaos of the enclosing `chaos(...)` block, if any."""
    return _chaos.get()


@contextmanager
def chaos(failure_rate: float, seed: int | None = None) -> Iterator[Chaos]:
    """Within the block, each execution of an executor built in it fails with probability
    `failure_rate` (`drain_queue` builds its executor when called)."""
    token = _chaos.set(Chaos(failure_rate, seed))
    try:
        yield _chaos.get()  # type: ignore[misc]
    finally:
        _chaos.reset(token)
