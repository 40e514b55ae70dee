"""The web commands: `dashboard` (the ASGI dashboard under uvicorn) and `metrics`
(Prometheus text on its own port). Both need the `web` extra and bind to loopback unless
told otherwise."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from flowstone.cli.common import Commands, UsageError, app_of
from flowstone.insights import Insights
from flowstone.queue.instance import FlowStone
from flowstone.queue.migrate import current_revision

LOOPBACK = ("127.0.0.1", "::1", "localhost")
WILDCARD = ("0.0.0.0", "::", "")  # names of "every address", never a Host


def add_commands(commands: Commands) -> None:
    """Add the web commands to `flowstone`'s command tree."""
    dashboard = commands.add("dashboard", "serve the web dashboard (needs flowstone[web])", cmd_dashboard)
    _listen_options(dashboard, 8765)
    dashboard.add_argument("--read-only", action="store_true", help="hide and refuse every action")
    dashboard.add_argument(
        "--basic-auth", metavar="USER:PASSWORD", help="require these HTTP Basic credentials"
    )
    dashboard.add_argument(
        "--token-env", metavar="NAME", help="require the token held by environment variable NAME"
    )
    dashboard.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for this host name (repeatable; '*.example.com' for subdomains)",
    )
    dashboard.add_argument(
        "--interval", type=float, default=1.0, help="seconds between live checks of moving jobs (default 1)"
    )
    metrics = commands.add(
        "metrics", "serve Prometheus metrics at /metrics (needs flowstone[web])", cmd_metrics
    )
    _listen_options(metrics, 9464)


def _listen_options(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=port, help=f"port (default {port})")


def _web() -> Any:
    """The `flowstone.web` package, or a usage error naming the extra."""
    try:
        import flowstone.web
        import flowstone.web.metrics
    except ImportError as error:
        raise UsageError(str(error)) from None
    return flowstone.web


def _ready(args: argparse.Namespace) -> FlowStone:
    """The app, once its schema is known to be migrated and the port to be valid."""
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be from 1 to 65535; got {args.port}")
    app = app_of(args)
    if current_revision(app.database_url, app.schema) is None:
        raise UsageError(f"schema {app.schema!r} is not migrated; run `flowstone migrate` first")
    return app


def _auth(args: argparse.Namespace, web: Any) -> Any:
    if args.basic_auth and args.token_env:
        raise UsageError("give --basic-auth or --token-env, not both")
    if args.basic_auth:
        return web.security.parse_basic(args.basic_auth)
    if args.token_env:
        token = os.environ.get(args.token_env)
        if not token:
            raise UsageError(f"--token-env {args.token_env}: that environment variable is not set")
        return web.token_auth(token)
    return None


def _hosts(args: argparse.Namespace) -> list[str]:
    """The host names the dashboard answers besides the loopback ones: those given and the
    bound address (unless it stands for every address, which no client names)."""
    if args.host in WILDCARD and not args.allowed_host:
        print(
            f"flowstone: warning: bound to {args.host or 'every address'}, the dashboard answers only"
            " loopback names: give the names clients use with --allowed-host",
            file=sys.stderr,
        )
    return [*args.allowed_host, *([] if args.host in WILDCARD else [args.host])]


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Serve the dashboard until interrupted."""
    web = _web()
    import uvicorn  # the web extra's, present once flowstone.web imported

    auth = _auth(args, web)
    app = _ready(args)
    if auth is None and args.host not in LOOPBACK:
        print(
            f"flowstone: warning: serving on {args.host} without --basic-auth or --token-env", file=sys.stderr
        )
    asgi = web.create_app(
        app, auth=auth, read_only=args.read_only, interval=args.interval, allowed_hosts=_hosts(args)
    )
    mode = " (read-only)" if args.read_only else ""
    print(f"FlowStone dashboard on http://{args.host}:{args.port}/{mode}", flush=True)
    # Open pages hold event streams that never end by themselves: give them a second.
    uvicorn.run(
        asgi,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    """Serve Prometheus metrics until interrupted."""
    web = _web()
    app = _ready(args)
    print(f"FlowStone metrics on http://{args.host}:{args.port}/metrics", flush=True)
    try:
        web.metrics.serve(Insights(app), args.host, args.port)
    except KeyboardInterrupt:
        return 130
    return 0
