"""Wires the hub and the WebSocket route into the application."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from chatsvc.auth.principal import Principal
from chatsvc.events.redis import RedisBroker
from chatsvc.keys import AUTHENTICATOR, BROKER, DB_SESSIONS, HUB, METRICS, REVOKER, SETTINGS
from chatsvc.policy import Action, WouldDeny
from chatsvc.realtime import ws
from chatsvc.realtime.frames import ACCESS_REVOKED
from chatsvc.realtime.hub import AccessHooks, Connection, Hub
from chatsvc.service.revocation import revoked_user
from chatsvc.store import messages, sessions

log = logging.getLogger("chatsvc.realtime")


async def realtime_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    broker = app[BROKER]

    def revoked(conn: Connection) -> None:
        ws.record_ws_denial(app, conn, Action.WS_REVOKED, ACCESS_REVOKED.reason)

    def relevel(principal: Principal, group: str, added: bool) -> Principal:
        """The socket's caller after the IdP added or removed ``group``, at the level
        the changed groups give, as they act in this permission mode."""
        real = principal.enforced or principal
        groups = set(real.groups)
        if added:
            groups.add(group)
        else:
            groups.discard(group)
        mapping = app[AUTHENTICATOR].mapping
        ordered = tuple(sorted(groups))
        level = mapping.effective(mapping.resolve(ordered))
        return mapping.acting(replace(real, groups=ordered, level=level, enforced=None))

    def would_revoke(conn: Connection) -> None:
        enforced = conn.principal.enforced or conn.principal
        would = WouldDeny(enforced, Action.WS_REVOKED, ACCESS_REVOKED.reason)
        ws.record_ws_would_deny(app, conn, would)

    app[HUB] = Hub(
        broker,
        app[METRICS],
        settings.typing_coalesce_seconds,
        settings.typing_timeout_seconds,
        revoked,
        settings.ws_reorder_wait,
        access=AccessHooks(
            revoked=functools.partial(revoked_user, app),
            relevel=relevel,
            renew_grace=settings.revocation_renew_grace,
        ),
        presence_interval=settings.presence_interval,
        replay_ring=settings.ws_replay_ring,
        on_would_revoke=would_revoke,
    )
    # Revocations this process missed, found by the periodic reload, reach its sockets.
    app[REVOKER].deliver_locally = app[HUB].on_event
    watch: asyncio.Task[None] | None = None
    if isinstance(broker, RedisBroker):
        resync = RoomResync(app, broker)
        broker.on_reconnect = resync.all_rooms
        watch = asyncio.create_task(resync.run(), name="room-resync")
    yield
    if watch is not None:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch


class RoomResync:
    """Keeps the live rooms right while events from other processes may be missed
    (see :mod:`chatsvc.events.redis` for the whole design).

    After each (re-)subscribe, and every ``broker_down_resync_interval`` while the
    broker is not relaying, each live room re-reads from the database its stored
    messages from its next seq on and then its access facts, and the hub applies
    them (:meth:`Hub.resync`). While not relaying, a room whose ordering waits on a
    missing seq is caught up at the next tick (well within ``ws_reorder_wait``),
    so a message lost with Redis is delivered in its place rather than skipped.
    A room whose read failed (database down) is retried after an interval, even
    once the broker relays again. One resync runs at a time, so an older read
    never overrides a newer one."""

    TICK = 0.1

    def __init__(self, app: web.Application, broker: RedisBroker) -> None:
        settings = app[SETTINGS]
        self.app = app
        self.broker = broker
        self.interval = settings.broker_down_resync_interval
        self.page = settings.ws_backlog_page
        self._lock = asyncio.Lock()
        self._stale: set[uuid.UUID] = set()

    async def all_rooms(self) -> None:
        await self.resync(list(self.app[HUB].rooms))

    async def resync(self, session_ids: Iterable[uuid.UUID]) -> None:
        async with self._lock:
            for session_id in session_ids:
                if await self._resync_room(session_id):
                    self._stale.discard(session_id)
                else:
                    self._stale.add(session_id)

    async def _resync_room(self, session_id: uuid.UUID) -> bool:
        """True when the room is caught up (or gone); False when the database failed."""
        hub = self.app[HUB]
        while (room := hub.rooms.get(session_id)) is not None:
            after = room.next_seq - 1 if room.next_seq is not None else None
            try:
                async with self.app[DB_SESSIONS]() as db:
                    # Messages first: none read was committed after the facts read next.
                    found = []
                    if after is not None:
                        found = await messages.list_messages(
                            db, session_id, self.page, after_seq=after
                        )
                    snapshot = await sessions.access_snapshot(db, session_id)
            except (SQLAlchemyError, OSError) as exc:
                log.warning(
                    "event=resync_failed session_id=%s error=%s", session_id, type(exc).__name__
                )
                return False
            hub.resync(session_id, snapshot, found)
            if snapshot is None or len(found) < self.page or room.next_seq == found[0]["seq"]:
                break  # else the next page, from where this one left the room
        return True

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_pass = next_retry = loop.time()
        while True:
            await asyncio.sleep(min(self.TICK, self.interval))
            rooms = self.app[HUB].rooms
            due: set[uuid.UUID] = set()
            now = loop.time()
            if self._stale and now >= next_retry:  # a failed read: again after an interval
                next_retry = now + self.interval
                due.update(self._stale)
            if not self.broker.relaying:
                if now >= next_pass:
                    next_pass = now + self.interval
                    due.update(rooms)
                else:
                    due.update(session_id for session_id, room in rooms.items() if room.pending)
            if due:
                try:
                    await self.resync(sorted(due))
                except Exception:  # keep watching whatever one pass ran into
                    log.exception("event=resync_pass_failed")


async def close_sockets(app: web.Application) -> None:
    """``on_shutdown``: every socket closes with 1001 (Going Away)."""
    hub = app.get(HUB)
    if hub is not None:
        await hub.close_all()


def setup_realtime(app: web.Application) -> None:
    app.cleanup_ctx.append(realtime_ctx)
    app.on_shutdown.append(close_sockets)
    ws.setup(app)
