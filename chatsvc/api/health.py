"""Operations routes, no token needed: liveness, readiness, metrics."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chatsvc.api.routing import Call, Reply
from chatsvc.keys import AUTHENTICATOR, BROKER, DB_ENGINE, DRAINING, METRICS, SETTINGS
from chatsvc.store.db import database_ready


async def healthz(call: Call[None, None]) -> dict[str, Any]:
    return {"status": "ok"}


async def readyz(call: Call[None, None]) -> Reply:
    app = call.app
    validator = app[AUTHENTICATOR].validator
    if not validator.keys_loaded:
        await validator.refresh()
    database = await database_ready(app[DB_ENGINE], app[SETTINGS].readiness_timeout)
    draining = app[DRAINING].is_set()
    ready = database and validator.keys_loaded and not draining
    body = {
        "status": "draining" if draining else "ok" if ready else "unavailable",
        "database": "up" if database else "down",
        "keys": "loaded" if validator.keys_loaded else "unavailable",
        # A broker outage degrades cross-process delivery but is not a reason to
        # take every node out of the load balancer.
        "broker": app[BROKER].status,
    }
    return Reply(body, 200 if ready else 503)


async def metrics(call: Call[None, None]) -> web.Response:
    payload = generate_latest(call.app[METRICS].registry)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})
