"""The one authentication middleware, for REST and WebSocket routes alike.

Every route under ``/api/`` requires a token (deny by default), but for the few the
identity provider calls, marked with :func:`own_authentication`, which check their
own credentials; everything else (health, metrics, OpenAPI, the page, sign-in) is
public. WebSocket routes are
marked with :func:`websocket_route`: their upgrade is accepted and closed with
1008 by the handler instead of answered 401, as the contract asks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from chatsvc.auth.cache import PermissionCache
from chatsvc.auth.dev_issuer import DevIssuer
from chatsvc.auth.groups import GroupMapping
from chatsvc.auth.revocations import RevocationList
from chatsvc.auth.tokens import HttpKeySource, KeySource, StaticKeySource, TokenValidator
from chatsvc.errors import Unauthenticated
from chatsvc.keys import (
    AUTHENTICATOR,
    CLOCK,
    DB_SESSIONS,
    DEV_ISSUER,
    HTTP_CLIENT,
    METRICS,
    PRINCIPAL,
    SETTINGS,
)
from chatsvc.service.identity import Authenticator

PROTECTED_PREFIX = "/api/"
TokenSource = Callable[[web.Request], Awaitable[str | None]]
TOKEN_SOURCES = web.AppKey[list[TokenSource]]("token_sources")


def websocket_route(handler: Any) -> Any:
    handler.chatsvc_websocket = True
    return handler


def own_authentication(handler: Any) -> Any:
    """Mark a route under ``/api/`` that the IdP calls: it authenticates the request
    itself (a signed JWT, a shared secret) instead of with a user's token."""
    handler.chatsvc_own_authentication = True
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
    if getattr(request.match_info.handler, "chatsvc_own_authentication", False):
        return await handler(request)
    is_websocket = getattr(request.match_info.handler, "chatsvc_websocket", False)
    try:
        await authenticate(request, is_websocket)
    except Unauthenticated:
        if not is_websocket:
            raise
        # The socket handler accepts the upgrade and closes it with 1008: no principal.
    return await handler(request)


async def authenticate(request: web.Request, is_websocket: bool) -> None:
    """Attach the request's principal. (Apart from the middleware, so that the
    token is not held by its frame for as long as a socket stays open.)"""
    token = await find_token(request, is_websocket)
    if token is None:
        raise Unauthenticated()
    request[PRINCIPAL] = await request.app[AUTHENTICATOR].authenticate(token)


async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    source: KeySource
    if settings.dev_issuer:
        dev = DevIssuer(settings)
        app[DEV_ISSUER] = dev
        source = StaticKeySource(dev.jwks)
    else:
        app[DEV_ISSUER] = None
        source = HttpKeySource(
            lambda: app[HTTP_CLIENT],
            settings.issuer,
            settings.okta_jwks_uri,
            settings.jwks_fetch_timeout,
        )
    validator = TokenValidator(
        source,
        issuer=settings.issuer,
        audience=settings.okta_audience,
        leeway=settings.jwt_leeway,
        min_refresh_interval=settings.jwks_min_refresh_interval,
    )
    app[AUTHENTICATOR] = Authenticator(
        validator,
        GroupMapping(settings),
        PermissionCache(settings.permission_cache_ttl, settings.permission_cache_size),
        app[DB_SESSIONS],
        app[METRICS],
        RevocationList(clock=lambda: app[CLOCK]()),
    )
    # Load the keys now if the issuer answers; if it does not, start anyway
    # (/readyz says 503 and /api answers 503 until the keys arrive).
    await validator.refresh(force=True)
    yield


async def dev_discovery(request: web.Request) -> web.Response:
    dev = request.app[DEV_ISSUER]
    if dev is None:
        raise web.HTTPNotFound()
    return web.json_response(dev.discovery())


async def dev_keys(request: web.Request) -> web.Response:
    dev = request.app[DEV_ISSUER]
    if dev is None:
        raise web.HTTPNotFound()
    return web.json_response(dev.jwks())


def setup_identity(app: web.Application) -> None:
    app.cleanup_ctx.append(auth_ctx)
    app.router.add_get("/dev-issuer/.well-known/openid-configuration", dev_discovery)
    app.router.add_get("/dev-issuer/keys", dev_keys)
