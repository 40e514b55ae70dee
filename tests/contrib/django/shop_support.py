"""Helpers of the shop project's tests: what others see committed, and `manage.py` runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).parent


def count(url: str, query: str, params: Any = ()) -> int:
    """One number, read from a connection of its own (what others see committed)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()
        return int(row[0]) if row else 0


def jobs(url: str) -> int:
    return count(url, "SELECT count(*) FROM flowstone.jobs WHERE worker = 'shop.ShipOrder'")


def orders(url: str) -> int:
    return count(url, "SELECT count(*) FROM shop_order")


def manage(url: str, *args: str, timeout: float = 60, **popen: Any) -> subprocess.CompletedProcess[str]:
    """`python manage.py ARGS` in the shop project on database `url`."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=HERE,
        env=manage_env(url),
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,
    )


def manage_env(url: str) -> dict[str, str]:
    """The environment of a `manage.py` process: the shop's settings on `url` (and no
    FLOWSTONE_DATABASE_URL, which the integration must not need)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWSTONE_", "DJANGO_", "PYTEST_"))}
    return {**env, "SHOP_DATABASE_URL": url, "PYTHONPATH": str(HERE)}
