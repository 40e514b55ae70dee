"""The dashboard's guards: allowed hosts, the auth hook, CSRF tokens and the origin of
actions, and response headers.

A request whose `Host` is not an allowed name is refused (400) before anything else: a
page of another site that rebinds its own name to the dashboard's address (DNS
rebinding) sends its own name. `auth` is any callable taking the request and returning
(or awaiting) True to let it through; `basic_auth` and `token_auth` build the usual ones.
Actions are POSTs carrying the token of the `flowstone_csrf` cookie (a random value,
HttpOnly, SameSite=Strict): a page of another origin can neither read it nor make the
browser send it; a POST whose `Origin` is another site's is refused too (403).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowstone.errors import ValidationError

Auth = Callable[[Request], bool | Awaitable[bool]]
"""Decides whether a request may see the dashboard: True lets it through."""

CSRF_COOKIE = "flowstone_csrf"
CSRF_FIELD = "csrf"

# Scripts and styles come from the package only (no inline code, no other origin), so
# even a value that escaped escaping could not run.
HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


def _credentials(request: Request) -> tuple[str, str] | None:
    """The user and password of a Basic authorization header, if any."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def basic_auth(user: str, password: str) -> Auth:
    """An auth hook accepting HTTP Basic credentials `user`/`password`."""
    if not user or not password:
        raise ValidationError("basic auth needs a user and a password (USER:PASSWORD)")

    def check(request: Request) -> bool:
        found = _credentials(request)
        return found is not None and _same(found[0], user) & _same(found[1], password)

    return check


def token_auth(token: str) -> Auth:
    """An auth hook accepting `Authorization: Bearer <token>`, or Basic credentials whose
    password is the token (what a browser can send)."""
    if len(token) < 16:
        raise ValidationError("the dashboard token must be at least 16 characters long")

    def check(request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            return _same(value.strip(), token)
        found = _credentials(request)
        return found is not None and _same(found[1], token)

    return check


def parse_basic(value: str) -> Auth:
    """`basic_auth` from `USER:PASSWORD` (the CLI's --basic-auth)."""
    user, sep, password = value.partition(":")
    if not sep:
        raise ValidationError(f"--basic-auth must look like USER:PASSWORD; got {user!r} without ':'")
    return basic_auth(user, password)


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
"""The names a dashboard answers to without being told more."""

_HOST = re.compile(r"(?:[a-z0-9_.-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?")
_PATTERN = re.compile(r"\*|(?:\*\.)?[a-z0-9_.-]+|[0-9a-f:.]+")


class Hosts:
    """The names a request's `Host` may carry: the loopback names and `extra` ones
    (a name, an address, `*.example.com` for a domain's subdomains, `*` for any)."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        given = [_pattern(value) for value in extra]
        self.extra = tuple(given)
        self.patterns = (*LOOPBACK_HOSTS, *given)

    def allows(self, name: str, patterns: Iterable[str] | None = None) -> bool:
        """Whether host name `name` (lowercase, no port, no brackets) matches a pattern."""
        return any(
            pattern in ("*", name) or (pattern.startswith("*.") and name.endswith(pattern[1:]))
            for pattern in (self.patterns if patterns is None else patterns)
        )


def _pattern(value: str) -> str:
    pattern = value.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")
    if not _PATTERN.fullmatch(pattern):
        raise ValidationError(f"allowed host {value!r} is not a host name, an address, '*.domain' or '*'")
    return pattern


def host_name(value: str) -> str | None:
    """The host name of a `Host` header (lowercase, without port or brackets), or None
    when the value is not a host."""
    value = value.strip().lower()
    if not _HOST.fullmatch(value):
        return None
    name = urlsplit(f"//{value}").hostname
    return name.rstrip(".") if name else None


class Guard:
    """ASGI middleware: refuses requests naming a host not allowed (400), requests the
    auth hook rejects (401) and POSTs from another site (403); adds the security headers
    to every response."""

    def __init__(self, app: ASGIApp, auth: Auth | None, hosts: Hosts) -> None:
        self.app = app
        self.auth = auth
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refused = await self._refusal(request)
        await (refused or self.app)(scope, receive, _with_headers(send))

    async def _refusal(self, request: Request) -> Response | None:
        """The answer to a request that may not go further, or None."""
        host = request.headers.get("host", "")
        name = host_name(host)
        if name is None or not self.hosts.allows(name):
            return PlainTextResponse(
                f"host {host[:100]!r} is not allowed here; add it with --allowed-host"
                " (allowed_hosts= of create_app)",
                400,
            )
        if self.auth is not None and not await _allowed(self.auth, request):
            refused = PlainTextResponse("authentication required", 401)
            refused.headers["www-authenticate"] = 'Basic realm="FlowStone", charset="UTF-8"'
            return refused
        if request.method not in ("GET", "HEAD", "OPTIONS") and not self._same_site(request, host):
            origin = request.headers.get("origin", "")[:100]
            return PlainTextResponse(f"refused a {request.method} from another site (Origin {origin!r})", 403)
        return None

    def _same_site(self, request: Request, host: str) -> bool:
        """Whether a POST's `Origin` (when the browser sent one) is this dashboard's own
        (the `Host` it was sent to) or a host given explicitly in `allowed_hosts`."""
        origin = request.headers.get("origin")
        if origin is None:
            return True  # not from a browser (or an old one): the CSRF token decides
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # "null": a sandboxed frame, a file, a redirect across sites
        own = parts.netloc.lower() == host.strip().lower()
        return own or self.hosts.allows(host_name(parts.netloc) or "", self.hosts.extra)


async def _allowed(auth: Auth, request: Request) -> bool:
    verdict = auth(request)
    if inspect.isawaitable(verdict):
        verdict = await verdict
    return bool(verdict)


def _with_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            extra = [(k.encode(), v.encode()) for k, v in HEADERS.items() if k.encode() not in present]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return sending


def csrf_token(request: Request) -> str:
    """The request's CSRF token: its cookie's, or a new one `remember_csrf` will set."""
    token = request.cookies.get(CSRF_COOKIE)
    if not token:
        token = request.state.new_csrf = secrets.token_urlsafe(32)
    return token


def remember_csrf(request: Request, response: Response) -> None:
    """Set the CSRF cookie when this request made a new token."""
    token = getattr(request.state, "new_csrf", None)
    if token:
        path = request.scope.get("root_path") or "/"
        response.set_cookie(CSRF_COOKIE, token, path=path, httponly=True, samesite="strict")


def csrf_ok(request: Request, submitted: str | None) -> bool:
    """Whether a POST carries the token of its CSRF cookie."""
    expected = request.cookies.get(CSRF_COOKIE)
    return bool(expected and submitted) and _same(str(submitted), str(expected))
