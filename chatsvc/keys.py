"""Typed application and request keys, in one module so that nothing imports in a cycle."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:

    pass

SETTINGS = web.AppKey["Settings"]("settings")
METRICS = web.AppKey["Metrics"]("metrics")
DB_ENGINE = web.AppKey["AsyncEngine"]("db_engine")
DB_SESSIONS = web.AppKey["async_sessionmaker[AsyncSession]"]("db_sessions")
HTTP_CLIENT = web.AppKey["aiohttp.ClientSession"]("http_client")
DEV_ISSUER = web.AppKey["DevIssuer | None"]("dev_issuer")
AUTHENTICATOR = web.AppKey["Authenticator"]("authenticator")
AUDIT = web.AppKey["AuditWriter"]("audit")
RATE_LIMITER = web.AppKey["RateLimiter"]("rate_limiter")
BROKER = web.AppKey["Broker"]("broker")
HUB = web.AppKey["Hub"]("hub")

PRINCIPAL = web.RequestKey["Principal"]("principal")
REQUEST_ID = web.RequestKey[str]("request_id")
ACTION = web.RequestKey["Action"]("action")
RESOURCE_ID = web.RequestKey["str | None"]("resource_id")
