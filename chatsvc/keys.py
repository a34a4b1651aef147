"""Typed application and request keys, in one module so that nothing imports in a cycle."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    import aiohttp
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    from chatsvc.audit import AuditWriter
    from chatsvc.auth.dev_issuer import DevIssuer
    from chatsvc.auth.principal import Principal
    from chatsvc.events.broker import Broker
    from chatsvc.metrics import Metrics
    from chatsvc.policy import Action
    from chatsvc.realtime.hub import Hub
    from chatsvc.service.identity import Authenticator
    from chatsvc.service.ratelimit import RateLimiter
    from chatsvc.service.revocation import Revoker
    from chatsvc.settings import Settings

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
DB_ENGINE: web.AppKey[AsyncEngine] = web.AppKey("db_engine")
DB_SESSIONS: web.AppKey[async_sessionmaker[AsyncSession]] = web.AppKey("db_sessions")
HTTP_CLIENT: web.AppKey[aiohttp.ClientSession] = web.AppKey("http_client")
DEV_ISSUER: web.AppKey[DevIssuer | None] = web.AppKey("dev_issuer")
AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("authenticator")
AUDIT: web.AppKey[AuditWriter] = web.AppKey("audit")
RATE_LIMITER: web.AppKey[RateLimiter] = web.AppKey("rate_limiter")
BROKER: web.AppKey[Broker] = web.AppKey("broker")
HUB: web.AppKey[Hub] = web.AppKey("hub")
REVOKER: web.AppKey[Revoker] = web.AppKey("revoker")
# Set when the process was asked to stop: /readyz answers 503 so a balancer drains it.
DRAINING: web.AppKey[asyncio.Event] = web.AppKey("draining")
# Wall-clock seconds (``time.time``) for what the app times itself; tests move it.
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")

PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id")
ACTION: web.RequestKey[Action] = web.RequestKey("action")
RESOURCE_ID: web.RequestKey[str | None] = web.RequestKey("resource_id")
# The stored id of the browser session a request was authenticated through.
BROWSER_SESSION_ID: web.RequestKey[str] = web.RequestKey("browser_session_id")
