"""Wires the broker, the hub and the WebSocket route into the application."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from chatsvc.keys import BROKER
from chatsvc.realtime.broker import Broker


async def realtime_ctx(app: web.Application) -> AsyncIterator[None]:
    broker = Broker()
    app[BROKER] = broker
    await broker.start()
    yield
    await broker.close()


def setup_realtime(app: web.Application) -> None:
    app.cleanup_ctx.append(realtime_ctx)
