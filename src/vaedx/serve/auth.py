"""API token for a service reachable from the network.

Why a shared token and not accounts: the service is a research tool run by one person or lab; what matters
is that binding to a network address does not hand the model to anyone who can reach it. Every route needs
the token (``Authorization: Bearer <token>``, or the ``vaedx_token`` cookie the web page sets after asking
for it, so that its ``<img>`` loads carry it too) except ``/healthz`` and the page itself with its static
files, which hold nothing but the page. Tokens are compared in constant time (``hmac.compare_digest``).
The cookie is ``SameSite=Strict`` and no CORS headers are sent, so another site cannot make a browser use it.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import unquote

TOKEN_ENV = "VAEDX_SERVE_TOKEN"
COOKIE = "vaedx_token"
OPEN_PATHS = ("/", "/healthz", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)
MIN_TOKEN_LENGTH = 16

Scope = MutableMapping[str, Any]
ASGIApp = Callable[..., Awaitable[None]]


def check_token(token: str) -> str:
    """The token itself, or ValueError when it is too short to resist guessing."""
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(
            f"the API token must be at least {MIN_TOKEN_LENGTH} characters "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )
    return token


def presented(headers: dict[bytes, bytes]) -> str | None:
    """The token a request carries: the Bearer header first, else the page's cookie."""
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    raw = headers.get(b"cookie", b"").decode("latin-1")
    if raw:
        try:
            jar = SimpleCookie(raw)
        except CookieError:
            return None
        if COOKIE in jar:
            return unquote(jar[COOKIE].value)  # the page stores it URL-encoded
    return None


class TokenAuth:
    """ASGI middleware: 401 (with ``WWW-Authenticate: Bearer``) for a request without the right token."""

    def __init__(self, app: ASGIApp, token: str):
        self.app, self.token = app, check_token(token).encode()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or _open(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        given = presented(dict(scope.get("headers") or []))
        if given is not None and hmac.compare_digest(given.encode(), self.token):
            await self.app(scope, receive, send)
            return
        detail = "missing API token" if given is None else "wrong API token"
        body = json.dumps({"detail": f"{detail}: send Authorization: Bearer <token>"}).encode()
        headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)
