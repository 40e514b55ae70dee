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
transaction held its lock, which then rolled back) and lowers the floor to it. Such a
job lies at or above the key the skipping claim started at, so an audit looks only as
far down as the claims of the last `AUDIT_MARGIN` seconds started (a FlowStone
transaction that locks a job ends within its statement timeout, well inside the margin)
and, every `AUDIT_FULL_EVERY` seconds, down to the head, for a lock held longer (by hand,
say). Off the claim path either way, and under a pin the bounded look walks only the dead
entries of the last minute or two, not all of them. Without notifications (polling)
there is no floor.
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

AUDIT_MARGIN = 60.0
"""An audit looks down to the lowest key the claims of at least the last this many
seconds started at (twice the default statement timeout)."""

AUDIT_FULL_EVERY = 300.0
"""Seconds between two audits that look down to the head of the claim index."""


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
        now = time.monotonic()
        self._audited_at = self._fully_audited_at = now
        # the lowest key claims started at: since `_period_at - AUDIT_MARGIN`, and before
        self._started, self._started_before = BOTTOM, BOTTOM
        self._period_at = now + AUDIT_MARGIN

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
        self._started_at(self.key)
        return self.key

    def _started_at(self, key: Key) -> None:
        """Note a claim's start, in periods of `AUDIT_MARGIN` s: the last two cover at
        least the last `AUDIT_MARGIN` seconds."""
        now = time.monotonic()
        if now >= self._period_at:
            self._started_before, self._started, self._period_at = self._started, key, now + AUDIT_MARGIN
        else:
            self._started = min(self._started, key)

    def audit_due(self) -> tuple[Key, Key] | None:
        """When an audit is due (every `AUDIT` seconds): the floor to look below and the
        key to look down to (BOTTOM, the head, every `AUDIT_FULL_EVERY` seconds); None
        when not due, disabled, or at the bottom already (nothing lies below)."""
        now = time.monotonic()
        if not self.enabled or now < self._audited_at + AUDIT:
            return None
        self._audited_at = now
        if self.key == BOTTOM:
            return None
        if now >= self._fully_audited_at + AUDIT_FULL_EVERY:
            self._fully_audited_at = now
            return self.key, BOTTOM
        return self.key, self.recent_start

    @property
    def recent_start(self) -> Key:
        """The lowest key the claims of at least the last `AUDIT_MARGIN` seconds started at."""
        return min(self._started, self._started_before)

    def claimed(self, last: Key | None) -> None:
        """A claim that started at `claiming()` returned jobs up to `last` (None: none)."""
        if last is not None and self.enabled:
            self.key = last if self._lowest is None else min(last, self._lowest)
