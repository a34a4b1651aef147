"""Wires the broker, the hub and the WebSocket route into the application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from chatsvc.keys import BROKER, DB_SESSIONS, HUB, METRICS, SETTINGS
from chatsvc.policy import Action
from chatsvc.realtime import ws
from chatsvc.realtime.broker import Broker
from chatsvc.realtime.hub import REASON_REVOKED, Connection, Hub
from chatsvc.realtime.redis_broker import RedisBroker
from chatsvc.settings import Settings
from chatsvc.store import sessions

log = logging.getLogger("chatsvc.realtime")


def create_broker(app: web.Application, settings: Settings) -> Broker:
    url = settings.broker_url
    if url is None or url.startswith("memory://"):
        return Broker()
    return RedisBroker(url, app[METRICS], settings)


async def realtime_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    broker = create_broker(app, settings)

    def revoked(conn: Connection) -> None:
        ws.record_ws_denial(app, conn, Action.WS_REVOKED, REASON_REVOKED)

    def permission_changed(conn: Connection) -> None:
        conn.send_json(
            {
                "type": "permission_changed",
                "permission": conn.principal.permission,
                "can_send": conn.can_send,
            }
        )

    app[BROKER] = broker
    app[HUB] = Hub(
        broker,
        app[METRICS],
        settings.typing_coalesce_seconds,
        settings.typing_timeout_seconds,
        revoked,
        permission_changed,
        settings.ws_reorder_wait,
    )
    if isinstance(broker, RedisBroker):
        broker.on_reconnect = lambda: resync_rooms(app)
    await broker.start()
    yield
    await broker.close()


async def resync_rooms(app: web.Application) -> None:
    """After a broker outage, re-read the access facts of every live room: a
    revocation or deletion published elsewhere meanwhile was not relayed."""
    hub = app[HUB]
    for session_id in list(hub.rooms):
        try:
            async with app[DB_SESSIONS]() as db:
                snapshot = await sessions.access_snapshot(db, session_id)
        except (SQLAlchemyError, OSError) as exc:
            log.warning(
                "event=resync_failed session_id=%s error=%s", session_id, type(exc).__name__
            )
            continue
        hub.resync(session_id, snapshot)


async def close_sockets(app: web.Application) -> None:
    """``on_shutdown``: every socket closes with 1001 (Going Away)."""
    hub = app.get(HUB)
    if hub is not None:
        await hub.close_all()


def setup_realtime(app: web.Application) -> None:
    app.cleanup_ctx.append(realtime_ctx)
    app.on_shutdown.append(close_sockets)
    ws.setup(app)
