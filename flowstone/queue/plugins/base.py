"""What a plugin is: one periodic action, on every node or on the leader only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from flowstone.queue.runtime.node import Node


class Plugin(Protocol):
    """Run `tick(node)` every `interval` seconds (only while leading if `leader_only`)."""

    name: str
    leader_only: bool

    @property
    def interval(self) -> float:
        """Seconds between ticks."""
        ...

    async def tick(self, node: Node) -> None:
        """Do one round of work."""
        ...
