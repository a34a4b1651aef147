"""Authentication: Okta token validation, the development issuer, the permission
cache and the middleware that attaches a :class:`Principal` to each request."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from chatsvc.auth.cache import PermissionCache
from chatsvc.auth.dev_issuer import DevIssuer
from chatsvc.auth.groups import GroupMapping
from chatsvc.auth.service import Authenticator
from chatsvc.auth.tokens import HttpKeySource, KeySource, StaticKeySource, TokenValidator
from chatsvc.keys import AUTHENTICATOR, DB_SESSIONS, DEV_ISSUER, HTTP_CLIENT, METRICS, SETTINGS


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


def setup_auth(app: web.Application) -> None:
    app.cleanup_ctx.append(auth_ctx)
    app.router.add_get("/dev-issuer/.well-known/openid-configuration", dev_discovery)
    app.router.add_get("/dev-issuer/keys", dev_keys)
