"""A PostgreSQL server of the benchmark's own, with the defaults (autovacuum on).

The shared server runs with autovacuum off; a long run on it would measure a table no
server in production has. This one is `initdb` into a temporary directory and started
on a free port (as the `postgres` user when run as root: the server refuses root), and
is stopped and removed afterwards. Its binaries: $PG_BIN, else PostgreSQL 15's, the
version of the shared server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
OWNER = "postgres"


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_as_owner(*command: str) -> None:
    """Run a server binary, as `postgres` when this process is root."""
    prefix = ["runuser", "-u", OWNER, "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *command], check=True, capture_output=True, text=True)


@contextmanager
def temporary_server(preload: str = "") -> Iterator[str]:
    """Start a fresh server; yield its URL (user postgres, trust auth); stop and remove it.
    `preload`: its shared_preload_libraries (pg_stat_statements, to time each statement)."""
    root = Path(tempfile.mkdtemp(prefix="flowstone-bench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, OWNER)
    data, port = root / "data", free_port()
    try:
        run_as_owner(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust")
        options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root}"
        options += f" -c shared_preload_libraries={preload}" if preload else ""
        pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-w"]
        run_as_owner(*pg_ctl, "-l", str(root / "server.log"), "-o", options, "start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run_as_owner(*pg_ctl, "-m", "fast", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
