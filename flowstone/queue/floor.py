"""A producer's claim floor: its claims start at the last (priority, scheduled_at, id)
key it claimed (inclusive) instead of at the head of the claim index.

Why: while a long transaction anywhere in the database pins the xmin horizon (an
analytics query, a `pg_dump`, a forgotten `BEGIN`), no claimed job's entry can leave the
claim index, and a claim from the head walks them all (44 ms a claim at 290k claimed
jobs, against 0.16 ms from a floor) — Brandur's "failure by MVCC".

Correctness: every job that becomes available below a floor lowers it. Inserts and
updates that leave a job available NOTIFY its key (migration 0012; an update's key is
rounded down, which only lowers more), a lowering that arrives while a claim is in flight
is kept when the claim moves the floor up, and anything notifications cannot tell is
covered: a lost listener connection or a failed cycle drops the floor (the next claim
starts at the head), and every `AUDIT` seconds an audit looks, on a connection of its
own, for an available job below the floor (one a claim skipped while another
transaction held its lock, which then rolled back) and lowers the floor to it. The audit
walks the dead entries a pin leaves, as a claim from the head would, but off the claim
path: claims stay as fast through a pin. Without notifications (polling) there is no
floor.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

Key = tuple[int, datetime, int]
"""A claim key: (priority, scheduled_at, id), the order of the claim index."""

BOTTOM: Key = (-1, datetime(1, 1, 1, tzinfo=UTC), 0)
"""No floor: below every job (priorities are 0 … 9 by a check constraint)."""

AUDIT = 30.0
"""Seconds between two audits of the floor (a look below it, off the claim path)."""


def parse_notification(payload: str) -> tuple[str, Key]:
    """The queue and key of a jobs-channel payload. A payload without a readable key (a
    bare queue name, from an older trigger or a NOTIFY by hand) lowers to BOTTOM."""
    try:
        data: Any = json.loads(payload) if payload.startswith("{") else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("queue"), str):
        return payload, BOTTOM
    try:
        key = (int(data["priority"]), datetime.fromisoformat(data["at"]), int(data["id"]))
    except (ValueError, TypeError, KeyError):
        return data["queue"], BOTTOM
    return data["queue"], key if key[1].tzinfo is not None else BOTTOM


class Floor:
    """One producer's floor. `claiming()` before a claim gives the key to claim from;
    `claimed(last)` after it moves the floor up to the last key claimed, keeping every
    lowering noted meanwhile."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.key = BOTTOM
        self._lowest: Key | None = None  # lowered to, since the claim in flight began
        self._audit_at = time.monotonic() + AUDIT

    def lower(self, key: Key) -> None:
        """A job became available at `key`: claims must reach it again."""
        self.key = min(self.key, key)
        self._lowest = key if self._lowest is None else min(self._lowest, key)

    def drop(self) -> None:
        """Claim from the head of the index next (what notifications could not tell)."""
        self.lower(BOTTOM)

    def claiming(self) -> Key:
        """The key the next claim starts at; BOTTOM when disabled."""
        if not self.enabled:
            return BOTTOM
        self._lowest = None
        return self.key

    def audit_due(self) -> Key | None:
        """The floor to look below, when an audit is due (every `AUDIT` seconds); None
        when not due, disabled, or at the bottom already (nothing lies below)."""
        if not self.enabled or time.monotonic() < self._audit_at:
            return None
        self._audit_at = time.monotonic() + AUDIT
        return None if self.key == BOTTOM else self.key

    def claimed(self, last: Key | None) -> None:
        """A claim that started at `claiming()` returned jobs up to `last` (None: none)."""
        if last is not None and self.enabled:
            self.key = last if self._lowest is None else min(last, self._lowest)
