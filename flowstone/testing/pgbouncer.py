"""A throwaway PgBouncer in front of a PostgreSQL server, for tests and benchmarks.

`PgBouncer.start(server_url)` runs the system's `pgbouncer` (Debian's package) in the
foreground on a free loopback port, in transaction pooling mode unless told otherwise,
with `trust` authentication for the server URL's user (its password, if any, is what
PgBouncer logs in to the server with). `stop()` ends that process alone.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

SEARCH = (os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin")
START_TIMEOUT = 10.0


def executable() -> str | None:
    """The `pgbouncer` binary, also where Debian puts it (/usr/sbin, off a user's PATH)."""
    return shutil.which("pgbouncer", path=os.pathsep.join(SEARCH))


def version() -> str | None:
    """`PgBouncer 1.18.0`, or None when it is not installed."""
    binary = executable()
    if binary is None:
        return None
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0].strip()


def free_port() -> int:
    """A loopback TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def config(server_url: str, port: int, pool_mode: str, pool_size: int, auth_file: Path) -> str:
    """pgbouncer.ini: every database of the server, trust for the clients, the admin
    console (database `pgbouncer`) open to the server URL's user."""
    info = conninfo_to_dict(server_url)
    user = str(info.get("user") or "postgres")
    server = f"host={info.get('host') or '127.0.0.1'} port={info.get('port') or 5432}"
    lines = [
        "[databases]",
        f"* = {server}",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",
        "auth_type = trust",
        f"auth_file = {auth_file}",
        f"admin_users = {user}",
        f"pool_mode = {pool_mode}",
        f"default_pool_size = {pool_size}",
        "max_client_conn = 500",
        "logfile =",
    ]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root: it drops to the server's system user
        lines.append(f"user = {_system_user(str(info.get('host') or ''))}")
    return "\n".join(lines) + "\n"


def _system_user(host: str) -> str:
    """Whom PgBouncer runs as under root: the owner of the server's socket directory (an
    embedded server's is private to it), else postgres, else nobody."""
    if host.startswith("/") and os.path.isdir(host):
        owner = pwd.getpwuid(os.stat(host).st_uid).pw_name
        if owner != "root":
            return owner
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("PgBouncer will not run as root and there is no postgres or nobody user to run it as")


@dataclass
class PgBouncer:
    """A running PgBouncer: `url_for(dbname)` leads through it, `show(...)` reads its admin console."""

    server_url: str
    port: int
    process: subprocess.Popen[bytes]
    directory: Path
    log: Path
    pool_mode: str
    _user: str = field(init=False)

    def __post_init__(self) -> None:
        self._user = str(conninfo_to_dict(self.server_url).get("user") or "postgres")

    @classmethod
    def start(
        cls,
        server_url: str,
        *,
        pool_mode: Literal["transaction", "session"] = "transaction",
        pool_size: int = 20,
        timeout: float = START_TIMEOUT,
    ) -> PgBouncer:
        """Start one in front of `server_url`'s server; return once it accepts clients."""
        binary = executable()
        if binary is None:
            raise FileNotFoundError("pgbouncer is not installed (apt-get install pgbouncer)")
        directory = Path(tempfile.mkdtemp(prefix="flowstone-pgbouncer-"))
        directory.chmod(0o755)  # readable by the user it drops to
        info = conninfo_to_dict(server_url)
        auth_file = directory / "userlist.txt"
        auth_file.write_text(f'"{info.get("user") or "postgres"}" "{info.get("password") or ""}"\n')
        port = free_port()
        ini = directory / "pgbouncer.ini"
        ini.write_text(config(server_url, port, pool_mode, pool_size, auth_file))
        log = directory / "pgbouncer.log"
        with log.open("wb") as out:
            process = subprocess.Popen([binary, str(ini)], stdout=out, stderr=subprocess.STDOUT)
        bouncer = cls(server_url, port, process, directory, log, pool_mode)
        try:
            bouncer._wait_ready(timeout)
        except BaseException:
            bouncer.stop()
            raise
        return bouncer

    def url_for(self, dbname: str | None = None) -> str:
        """The server URL (pointed at `dbname` when given) leading through this PgBouncer."""
        given = {"dbname": dbname} if dbname else {}
        return make_conninfo(self.server_url, host="127.0.0.1", port=str(self.port), **given)

    def show(self, what: str) -> list[dict[str, Any]]:
        """`SHOW <what>` on the admin console (STATS, POOLS, SERVERS, …) as dicts."""
        if not what.isalpha():
            raise ValueError(f"not an admin console SHOW target: {what!r}")
        with psycopg.connect(self.url_for("pgbouncer"), autocommit=True) as conn:
            cursor = psycopg.ClientCursor(conn)  # the console speaks the simple protocol only
            cursor.execute(f"SHOW {what}")
            names = [column.name for column in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def transactions(self, dbname: str) -> int:
        """Transactions PgBouncer has pooled for `dbname` so far."""
        return sum(int(row["total_xact_count"]) for row in self.show("STATS") if row["database"] == dbname)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited at start: {self.log.read_text()[-2000:]}")
            try:
                self.show("VERSION")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)  # the interval of a bounded wait for the port to open

    def stop(self) -> None:
        """End this PgBouncer (SIGTERM; SIGKILL after 5 s) and remove its files."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
