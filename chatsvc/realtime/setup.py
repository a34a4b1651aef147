"""Wires the hub and the WebSocket route into the application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from chatsvc.events.redis import RedisBroker
from chatsvc.keys import BROKER, DB_SESSIONS, HUB, METRICS, SETTINGS
from chatsvc.policy import Action
from chatsvc.realtime import ws
from chatsvc.realtime.frames import ACCESS_REVOKED
from chatsvc.realtime.hub import Connection, Hub
from chatsvc.store import sessions

log = logging.getLogger("chatsvc.realtime")


async def realtime_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    broker = app[BROKER]

    def revoked(conn: Connection) -> None:
        ws.record_ws_denial(app, conn, Action.WS_REVOKED, ACCESS_REVOKED.reason)

    app[HUB] = Hub(
        broker,
        app[METRICS],
        settings.typing_coalesce_seconds,
        settings.typing_timeout_seconds,
        revoked,
        settings.ws_reorder_wait,
        presence_interval=settings.presence_interval,
        replay_ring=settings.ws_replay_ring,
    )
    if isinstance(broker, RedisBroker):
        broker.on_reconnect = lambda: resync_rooms(app)
    yield


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
