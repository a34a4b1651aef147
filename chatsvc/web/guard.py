"""The CSRF and Origin guard for cookie-authenticated requests.

A browser attaches the cookie to requests other sites make, so a request
authenticated by the cookie must prove it comes from our page:

- state-changing requests (``POST``/``PUT``/``PATCH``/``DELETE`` under ``/api/``,
  and ``POST /auth/logout``) carry ``X-CSRF-Token`` equal to the token kept in
  the session (the page reads it from its ``<meta name="csrf-token">``);
- WebSocket upgrades carry an ``Origin`` from the allow-list (the service's own
  origin plus ``allowed_origins``).

``Bearer`` requests are not affected: another site cannot make a browser send them.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from chatsvc.errors import ChatError
from chatsvc.http.forwarded import public_origin
from chatsvc.keys import METRICS, REQUEST_ID, SETTINGS
from chatsvc.web.session import CSRF_HEADER, check_csrf
from chatsvc.web.signin import LOGOUT_PATH
from chatsvc.web.token_source import COOKIE_AUTH

log = logging.getLogger("chatsvc.auth.browser")

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class OriginRejected(ChatError):
    status, code, title = 403, "ORIGIN_NOT_ALLOWED", "Forbidden"


def normalise_origin(origin: str) -> str | None:
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "ws": 80, "https": 443, "wss": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def allowed_origins(request: web.Request) -> set[str]:
    """The service's own origin (its public URL, else scheme://Host of the request)
    plus ``allowed_origins``."""
    candidates = [public_origin(request), *request.app[SETTINGS].allowed_origins]
    return {origin for c in candidates if (origin := normalise_origin(c)) is not None}


def check_origin(request: web.Request) -> None:
    origin = request.headers.get("Origin")
    if origin is not None and normalise_origin(origin) in allowed_origins(request):
        return
    request.app[METRICS].auth_failures.labels("origin").inc()
    log.info(
        "event=ws_origin_rejected origin=%r request_id=%s",
        (origin or "")[:200],
        request.get(REQUEST_ID),
    )
    raise OriginRejected("WebSocket connections with the session cookie need an allowed Origin")


def is_websocket_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


@web.middleware
async def browser_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Runs after the auth middleware, which marks cookie-authenticated requests."""
    if request.path == LOGOUT_PATH and request.method in UNSAFE_METHODS:
        await check_csrf(request, request.headers.get(CSRF_HEADER))
    elif request.get(COOKIE_AUTH):
        if is_websocket_upgrade(request):
            check_origin(request)
        elif request.method in UNSAFE_METHODS:
            await check_csrf(request, request.headers.get(CSRF_HEADER))
    return await handler(request)
