"""The application factory, used by ``run.py`` and by the tests."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from chatsvc.api import setup_routes
from chatsvc.audit import setup_audit
from chatsvc.events.setup import setup_events
from chatsvc.http.forwarded import forwarded_middleware
from chatsvc.http.identity import TOKEN_SOURCES, TokenSource, auth_middleware, setup_identity
from chatsvc.http.problems import add_request_id_header, problem_middleware, request_context
from chatsvc.http.shadow import shadow_middleware
from chatsvc.keys import CLOCK, DRAINING, HTTP_CLIENT, METRICS, RATE_LIMITER, SETTINGS
from chatsvc.metrics import Metrics
from chatsvc.realtime.setup import setup_realtime
from chatsvc.service.ratelimit import RateLimiter
from chatsvc.service.revocation import setup_revocations
from chatsvc.settings import Settings, load_settings
from chatsvc.store.db import setup_database
from chatsvc.web import (
    browser_guard,
    save_session_on_upgrade,
    session_cookie_middleware,
    session_token,
    setup_web,
)

log = logging.getLogger("chatsvc")


async def http_client_ctx(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(headers={"User-Agent": "chatsvc"}) as client:
        app[HTTP_CLIENT] = client
        yield


def create_app(settings: Settings | None = None) -> web.Application:
    settings = settings or load_settings()
    app = web.Application(
        middlewares=[
            request_context,  # outermost: every response carries the request id
            forwarded_middleware(settings),  # the client behind a trusted proxy
            # Wraps the problem middleware, so that error responses still carry
            # cookie updates (such as a refreshed token).
            session_cookie_middleware(settings),
            problem_middleware,
            auth_middleware,
            # Shadow mode only: each request acts at the off level, and what enforcement
            # would have refused is audited (inside problem_middleware, which audits denials).
            *([shadow_middleware] if settings.permission_mode == "shadow" else []),
            browser_guard,  # CSRF and Origin checks on the requests auth marked as cookie ones
        ],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[DRAINING] = asyncio.Event()
    app[CLOCK] = time.time
    app[METRICS] = Metrics(broker_configured=settings.broker_configured)
    app[RATE_LIMITER] = RateLimiter(
        settings.message_rate, settings.message_burst, settings.rate_limit_users
    )
    # Where the auth middleware looks after the Authorization header (and before
    # ?access_token on WebSocket routes): the browser's session cookie.
    token_sources: list[TokenSource] = [session_token]
    app[TOKEN_SOURCES] = token_sources
    app.on_response_prepare.append(add_request_id_header)
    app.on_response_prepare.append(save_session_on_upgrade)
    # Resources in dependency order; cleanup_ctx tears them down in reverse.
    app.cleanup_ctx.append(http_client_ctx)
    setup_database(app)
    setup_identity(app)
    setup_audit(app)
    setup_events(app)
    setup_revocations(app)
    setup_realtime(app)
    setup_routes(app)
    setup_web(app)
    return app
