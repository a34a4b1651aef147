"""The broker as an application resource, chosen by ``CHATSVC_BROKER_URL``."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from chatsvc.events.broker import Broker, MemoryBroker
from chatsvc.events.redis import RedisBroker
from chatsvc.keys import BROKER, METRICS, SETTINGS


def create_broker(app: web.Application) -> Broker:
    settings = app[SETTINGS]
    if settings.broker_url is None or not settings.broker_configured:
        return MemoryBroker()
    return RedisBroker(settings.broker_url, app[METRICS], settings)


async def broker_ctx(app: web.Application) -> AsyncIterator[None]:
    """Started before the hub attaches: until then there is no room to deliver to."""
    broker = app[BROKER] = create_broker(app)
    await broker.start()
    yield
    await broker.close()


def setup_events(app: web.Application) -> None:
    app.cleanup_ctx.append(broker_ctx)
