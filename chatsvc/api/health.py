"""Operations routes, no token needed: liveness, readiness, metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chatsvc.api.responses import json_response
from chatsvc.keys import AUTHENTICATOR, BROKER, DB_ENGINE, DRAINING, METRICS, SETTINGS
from chatsvc.store.db import database_ready


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    validator = request.app[AUTHENTICATOR].validator
    if not validator.keys_loaded:
        await validator.refresh()
    database = await database_ready(request.app[DB_ENGINE], request.app[SETTINGS].readiness_timeout)
    broker = request.app[BROKER].status
    draining = request.app[DRAINING].is_set()
    ready = database and validator.keys_loaded and not draining
    body = {
        "status": "draining" if draining else "ok" if ready else "unavailable",
        "database": "up" if database else "down",
        "keys": "loaded" if validator.keys_loaded else "unavailable",
        # A broker outage degrades cross-process delivery but is not a reason to
        # take every node out of the load balancer.
        "broker": broker,
    }
    return json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    payload = generate_latest(request.app[METRICS].registry)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
