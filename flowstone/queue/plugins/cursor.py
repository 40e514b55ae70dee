"""A periodic statement's lower bound on the time column it walks (the stager's
`scheduled_at`, the pruner's terminal timestamps).

Why: while a long transaction pins the xmin horizon, the index entries of every row the
statement already handled (staged, deleted) stay; a statement that starts at the head of
its index walks them all on every tick, longer with every minute of the pin. From a
cursor it walks only the last `margin` seconds of them.

Correctness: a pass that caught up saw every row below its upper bound (the `mark`) that
was committed and not locked. A row that appears below the mark later was written (or
released) by a transaction that began before it; FlowStone's own transactions end within
their statement timeouts, so the next passes start `margin` below the mark. What may take
longer (a transactional insert in the caller's long transaction, a job locked by hand,
plain SQL writing an old timestamp) is found by a full pass from the head: the first
pass, every `full_every` seconds, and every pass until one catches up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

MARGIN = 60.0
"""The default margin: twice the default `statement_timeout` (`margin_for`)."""


def margin_for(statement_timeout: float) -> float:
    """A margin longer than FlowStone's writing transactions last in practice: the ones that
    write a due or finished row (acks, snoozes, retries, cancels) are a few statements, each
    bounded by `statement_timeout`; one that lasts longer is found by the next full pass."""
    return 2 * statement_timeout


class Cursor:
    """`after()` before a pass: where it starts (None: a full pass); `caught_up(mark)` after
    a pass that left nothing behind below `mark`."""

    def __init__(self, margin: float, full_every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.margin = timedelta(seconds=margin)
        self.full_every = full_every
        self._clock = clock
        self._mark: datetime | None = None
        self._full_at = clock()

    def after(self) -> datetime | None:
        """The lower bound of the next pass: `margin` below the last mark, or None (from
        the head) when no pass has caught up since the last full one or a full one is due."""
        if self._clock() >= self._full_at:
            self._full_at = self._clock() + self.full_every
            self._mark = None
        return None if self._mark is None else self._mark - self.margin

    def caught_up(self, mark: datetime) -> None:
        """The pass just run left no visible, unlocked row below `mark`."""
        self._mark = mark
