"""The one authentication middleware, for REST and WebSocket routes alike.

Every route under ``/api/`` requires a token (deny by default); everything else
(health, metrics, OpenAPI, the page, sign-in) is public. WebSocket routes are
marked with :func:`websocket_route`: their upgrade is accepted and closed with
1008 by the handler instead of answered 401, as the contract asks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from chatsvc.errors import Unauthenticated
from chatsvc.keys import AUTHENTICATOR, PRINCIPAL

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PROTECTED_PREFIX = "/api/"
WS_AUTH_ERROR = web.RequestKey[Exception]("ws_auth_error")
TokenSource = Callable[[web.Request], Awaitable[str | None]]
TOKEN_SOURCES = web.AppKey[list[TokenSource]]("token_sources")


def websocket_route(handler: Any) -> Any:
    handler.chatsvc_websocket = True
    return handler


def bearer_token(request: web.Request) -> str | None:
    """The ``Authorization: Bearer`` credential; another scheme counts as none."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, credential = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credential.strip()


async def find_token(request: web.Request, is_websocket: bool) -> str | None:
    token = bearer_token(request)
    if token is not None:
        return token
    for source in request.app.get(TOKEN_SOURCES, ()):
        token = await source(request)
        if token is not None:
            return token
    if is_websocket:
        return request.query.get("access_token")
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(PROTECTED_PREFIX):
        return await handler(request)
    is_websocket = getattr(request.match_info.handler, "chatsvc_websocket", False)
    try:
        token = await find_token(request, is_websocket)
        if token is None:
            raise Unauthenticated()
        request[PRINCIPAL] = await request.app[AUTHENTICATOR].authenticate(token)
    except Unauthenticated as exc:
        if not is_websocket:
            raise
        request[WS_AUTH_ERROR] = exc
    return await handler(request)
