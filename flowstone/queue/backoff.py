"""Retry delays: Oban's default exponential backoff with jitter."""

from __future__ import annotations

import random

MAX_EXPONENT = 20


def exponential(attempt: int, *, base: float = 15.0, jitter: float = 0.1) -> float:
    """Seconds to wait after `attempt` failed: base + 2**attempt, jittered by ±`jitter`.

    Mirrors Oban's default (`15 + 2^attempt`); the exponent is capped so that very
    high attempt counts cannot overflow a timestamp.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0; got {attempt}")
    delay = base + 2.0 ** min(attempt, MAX_EXPONENT)
    spread = delay * jitter
    return max(0.0, delay + random.uniform(-spread, spread))  # jitter, not crypto
