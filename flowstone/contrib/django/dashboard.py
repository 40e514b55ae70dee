"""The dashboard behind Django's login, staff only, beside Django's ASGI application.

Django's URLconf routes to Django views, not to ASGI applications, so the dashboard is
mounted in front of Django by path prefix (`asgi.py`):

    from django.core.asgi import get_asgi_application
    django_app = get_asgi_application()          # first: it sets Django up
    from flowstone.contrib.django import PrefixRouter, staff_dashboard
    application = PrefixRouter(django_app, {"/flowstone": staff_dashboard()})

Anonymous visitors are sent to `settings.LOGIN_URL` (and back), signed-in users who are
not staff get 403; staff see the dashboard. It needs `flowstone[web]` beside
`flowstone[django]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AsyncExitStack
from importlib import import_module
from typing import Any
from urllib.parse import quote

from asgiref.sync import sync_to_async
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from flowstone.contrib.django.instance import DjangoFlowStone, get_flowstone


def staff_dashboard(fs: DjangoFlowStone | None = None, **options: Any) -> ASGIApp:
    """`flowstone.web.create_app(fs, **options)` (default: the project's instance) for
    Django's staff: the session's user must be active and `is_staff`. The hosts it answers
    are Django's `ALLOWED_HOSTS` unless `allowed_hosts=` is given."""
    from flowstone.web import create_app

    options.setdefault("allowed_hosts", django_hosts())
    board = create_app(fs if fs is not None else get_flowstone(), **options)
    return StaffOnly(board)


def django_hosts() -> list[str]:
    """Django's `ALLOWED_HOSTS` as the dashboard's patterns: `.example.com` (the domain and
    its subdomains) becomes `example.com` and `*.example.com`."""
    from django.conf import settings

    hosts: list[str] = []
    for host in settings.ALLOWED_HOSTS:
        hosts += [host[1:], f"*{host}"] if host.startswith(".") else [host]
    return hosts


class StaffOnly:
    """ASGI middleware letting through the requests of Django's active staff users
    (signed in with Django's session cookie); others are redirected to the login page
    (anonymous) or refused (403)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = await _refusal(Request(scope))
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await refusal(scope, receive, send)


async def _refusal(request: Request) -> Response | None:
    """None for a staff member; else the login redirect or a 403."""
    from django.conf import settings
    from django.shortcuts import resolve_url

    user = await sync_to_async(_user, thread_sensitive=True)(
        request.cookies.get(settings.SESSION_COOKIE_NAME)
    )
    if user is not None and user.is_active and user.is_staff:
        return None
    if user is not None and user.is_authenticated:
        return PlainTextResponse("staff only", 403)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    login = str(resolve_url(settings.LOGIN_URL))
    return RedirectResponse(f"{login}?{REDIRECT_FIELD}={quote(here, safe='/')}", 302)


REDIRECT_FIELD = "next"
"""The login page's parameter naming where to go back to (Django's `REDIRECT_FIELD_NAME`)."""


def _user(session_key: str | None) -> Any:
    """The user of a Django session (None without a session), as Django's
    `AuthenticationMiddleware` finds it."""
    from django.conf import settings
    from django.contrib.auth import get_user
    from django.db import close_old_connections
    from django.http import HttpRequest

    if not session_key:
        return None
    close_old_connections()  # as Django does around each request
    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return get_user(request)


class PrefixRouter:
    """An ASGI application sending each request whose path starts with one of `routes`'
    prefixes to that route's application (with `root_path` extended by the prefix, as
    Starlette's `Mount` does), and every other request to `default` (Django's).

    Lifespan events go to the routed Starlette applications (Django takes none)."""

    def __init__(self, default: ASGIApp, routes: Mapping[str, ASGIApp]) -> None:
        for prefix in routes:
            if not prefix.startswith("/") or prefix.endswith("/"):
                raise ValueError(f"a route prefix starts with '/' and does not end with one; got {prefix!r}")
        self.default = default
        self.routes = sorted(routes.items(), key=lambda route: -len(route[0]))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        root, path = str(scope.get("root_path", "")), str(scope["path"])
        path = path[len(root) :] if root and path.startswith(root) else path
        for prefix, app in self.routes:
            if path == prefix or path.startswith(prefix + "/"):
                await app({**scope, "root_path": root + prefix}, receive, send)
                return
        await self.default(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Start the routed Starlette applications' lifespans; stop them at shutdown."""
        await receive()  # lifespan.startup
        async with AsyncExitStack() as stack:
            for _, app in self.routes:
                router = getattr(_inner(app), "router", None)
                if router is not None:
                    await stack.enter_async_context(router.lifespan_context(_inner(app)))
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})


def _inner(app: ASGIApp) -> ASGIApp:
    """The application a `StaffOnly` guards (itself otherwise)."""
    return app.app if isinstance(app, StaffOnly) else app
