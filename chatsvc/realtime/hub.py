"""The hub: this process's live WebSocket members, grouped in rooms by session.

A broadcast serialises its frame once, builds the WebSocket frame around it
once, and writes the same bytes to every member's transport without awaiting
any socket (:mod:`chatsvc.realtime.wire`). A member with more than
``ws_send_queue_bytes`` waiting in its transport is closed with 1013, so a slow
or stalled client never holds back the others. Presence is coalesced per room,
and each room keeps its access facts and its newest message frames so that a
connect to a live room needs no query.

Events reach :meth:`Hub.on_event` from the broker, whether published by this
process or (through Redis) by another one, so REST changes, WebSocket sends and
revocations behave the same everywhere. The hub dispatches on the event's type.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from chatsvc.auth.principal import Principal
from chatsvc.events import (
    BrowserSessionsEnded,
    CollaboratorChanged,
    Event,
    MessageDeleted,
    MessageSent,
    MessageUpdated,
    PresenceChanged,
    SessionDeleted,
    SessionUpdated,
    TypingChanged,
    UserRevoked,
)
from chatsvc.events.broker import Broker
from chatsvc.metrics import Metrics
from chatsvc.policy import Action, SessionFacts, allows, permissions, shadow_refusal
from chatsvc.realtime import frames, wire
from chatsvc.realtime.frames import ACCESS_REVOKED, SESSION_DELETED, SHUTDOWN, TOO_SLOW, Disconnect

log = logging.getLogger("chatsvc.realtime")


_connection_ids = itertools.count(1)


class ConnectionLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"conn={self.extra['conn']} {msg}", kwargs  # type: ignore[index]


class Connection:
    """One member's socket: its facts, its transport and its one close path.

    Frames reach the client by whole pre-built frames written straight to the
    transport (:mod:`chatsvc.realtime.wire`): no queue, no writer task. The
    transport's own buffer is the send queue; a member with more than
    ``max_bytes`` waiting there is closed with 1013. A socket that negotiated
    permessage-deflate takes the ordinary path (one small drain task in order).

    Every way a connection ends goes through :meth:`close` (from any task,
    idempotent: hub, timers, the handler) and the handler's ``finally`` awaits
    :meth:`finish`, the one place that waits for the socket to be closed.
    """

    # Ten thousand idle sockets hold ten thousand of these: no per-instance dict.
    __slots__ = (
        "_close_timeout",
        "_closer",
        "_direct",
        "_drainer",
        "_expiry",
        "_held",
        "_held_bytes",
        "_max_bytes",
        "_queue",
        "_queued_bytes",
        "browser_session",
        "client_ip",
        "closed_with",
        "enforcement_closed",
        "facts",
        "id",
        "on_slow",
        "principal",
        "replayed_seq",
        "request_id",
        "room",
        "session_id",
        "transport",
        "user_id",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        principal: Principal,
        session_id: uuid.UUID,
        facts: SessionFacts,
        max_bytes: int,
        request_id: str | None,
        client_ip: str | None,
        close_timeout: float,
    ) -> None:
        self.id = f"ws{next(_connection_ids)}"
        self.ws = ws
        self.principal = principal
        self.user_id = principal.user_id
        self.session_id = session_id
        self.facts = facts
        self.request_id = request_id
        self.client_ip = client_ip
        self._max_bytes = max_bytes
        self._close_timeout = close_timeout
        self._direct = wire.DirectWriter(ws) if wire.supports_direct(ws) else None
        # The broadcast loop's fast path writes here itself (see Hub.broadcast_payload).
        self.transport = self._direct.transport if self._direct is not None else None
        # The deflate path only: payloads in order (made on first use), and the
        # task draining them.
        self._queue: deque[bytes] | None = None
        self._queued_bytes = 0
        self._drainer: asyncio.Task[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._closer: asyncio.Task[None] | None = None
        # While the backlog of a resume is replayed, live frames wait here.
        self._held: list[tuple[bytes, bytes, int | None]] | None = None
        self._held_bytes = 0
        self.replayed_seq = 0
        self.closed_with: Disconnect | None = None  # when the server closed it
        # The browser session it was opened through (its stored id), if any: a
        # back-channel logout of that session closes it.
        self.browser_session: str | None = None
        self.on_slow: Callable[[], None] | None = None  # set by the hub: counts 1013 closes
        # The room it is in (set by Hub.add): its coalesced broadcasts go out
        # before any frame of this member's own, so the order stays the same.
        self.room: Room | None = None
        # Shadow mode: enforcement would have closed it already (at connect or on a
        # re-check), and that was audited once; it is not audited again.
        self.enforcement_closed = False

    @property
    def log(self) -> ConnectionLog:
        """This connection's logger (each line starts with ``conn=<id>``); made per
        use, since a connection logs a few lines in its life."""
        return ConnectionLog(log, {"conn": self.id})

    def _flush_room(self) -> None:
        room = self.room
        if room is not None and room.outbox:
            room.flush_outbox()

    @property
    def can_send(self) -> bool:
        return allows(self.principal, Action.WS_SEND, self.facts)

    @property
    def permissions(self) -> dict[str, bool]:
        return permissions(self.principal, self.facts)

    @property
    def closing(self) -> bool:
        return self.closed_with is not None or self.ws.closed

    # --- sending ---------------------------------------------------------
    def deliver(self, payload: bytes, frame: bytes, seq: int | None = None) -> bool:
        """Send one frame (``payload`` as JSON, ``frame`` the same on the wire).

        False when it was not sent: the member is closing, or could not keep up
        (then it is closed with 1013)."""
        if self.closed_with is not None:
            return False
        if seq is not None and seq <= self.replayed_seq:
            return True  # the backlog already had it (its live copy came late)
        if self._held is not None:
            self._held_bytes += len(frame)
            if self._held_bytes > self._max_bytes:
                self._too_slow()
                return False
            self._held.append((payload, frame, seq))
            return True
        direct = self._direct
        if direct is not None:
            if not direct.writable():
                return False
            if direct.write(frame) > self._max_bytes:
                self._too_slow()
                return False
            return True
        return self._enqueue(payload)

    def send_json(self, frame: frames.Frame) -> bool:
        self._flush_room()
        payload = orjson.dumps(frame)
        return self.deliver(payload, wire.text_frame(payload))

    async def send_now(self, payload: bytes) -> None:
        """Send ahead of any held frame (``connected``, the backlog): the handler only."""
        if self.closed_with is not None:
            return
        self._flush_room()
        if self._direct is not None:
            if self._direct.writable():
                self._direct.write(wire.text_frame(payload))
        else:
            await self.ws.send_frame(payload, WSMsgType.TEXT)

    def _too_slow(self) -> None:
        if self.on_slow is not None:
            self.on_slow()
        self.close(TOO_SLOW)

    def hold_live_frames(self) -> None:
        self._held = []
        self._held_bytes = 0

    def release_held_frames(self) -> None:
        """End a resume: send what arrived meanwhile, minus what the backlog already had."""
        held, self._held = self._held or [], None
        for payload, frame, seq in held:
            if seq is None or seq > self.replayed_seq:
                self.deliver(payload, frame, seq)

    def _enqueue(self, payload: bytes) -> bool:
        if self._queued_bytes + len(payload) > self._max_bytes:
            self._too_slow()
            return False
        if self._queue is None:
            self._queue = deque()
        self._queue.append(payload)
        self._queued_bytes += len(payload)
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return True

    async def _drain(self) -> None:
        queue, ws = self._queue, self.ws
        assert queue is not None  # (made by _enqueue, which starts this task)
        try:
            while queue:
                payload = queue.popleft()
                self._queued_bytes -= len(payload)
                await ws.send_frame(payload, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError) as exc:
            self.log.debug("event=ws_write_failed error=%s", type(exc).__name__)
        finally:
            self._drainer = None

    # --- closing -----------------------------------------------------------
    def close(self, why: Disconnect) -> None:
        """End the connection with ``why``; from any task, at once, idempotent.

        What was already written (e.g. ``session_deleted``) goes out before the
        close frame; a member that stopped reading cannot take the close frame
        either, so the wait for it is bounded."""
        if self.closed_with is not None or self.ws.closed:
            return
        self._flush_room()  # (what was broadcast before the close goes out first)
        self.closed_with = why
        self._held = None
        self.cancel_expiry()
        self.log.info("event=ws_close code=%d reason=%r", why.code, why.reason)
        self._closer = asyncio.get_running_loop().create_task(
            self._close_socket(why), name=f"{self.id}-close"
        )

    async def _close_socket(self, why: Disconnect) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._close_timeout):
                drainer = self._drainer
                if drainer is not None:
                    if why is TOO_SLOW and self._queue is not None:
                        self._queue.clear()
                    await asyncio.shield(drainer)
                await self.ws.close(code=why.code, message=why.reason.encode())

    async def finish(self) -> None:
        """The handler's ``finally``: wait until the socket is closed, whoever closed it."""
        self.cancel_expiry()
        self._held = None
        if self._closer is None and self._drainer is not None:
            self._drainer.cancel()
        closer = self._closer
        if closer is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await closer
        elif not self.ws.closed:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._close_timeout):
                    await self.ws.close()

    def schedule_expiry(self, expires_at: float, why: Disconnect = frames.TOKEN_EXPIRED) -> None:
        """Close at ``expires_at`` unless renewed: the token's ``exp`` (``Token expired``),
        or the deadline to renew a token the IdP revoked (``Access revoked``)."""
        self.cancel_expiry()
        delay = max(0.0, expires_at - time.time())
        self._expiry = asyncio.get_running_loop().call_later(delay, self.close, why)

    def cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None


@dataclass
class TypingState:
    is_typing: bool = False  # what the others last saw
    wanted: bool = False  # what the user says now
    last_broadcast: float = float("-inf")
    stop_timer: asyncio.TimerHandle | None = None
    flush_timer: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        for timer in (self.stop_timer, self.flush_timer):
            if timer is not None:
                timer.cancel()


@dataclass
class Room:
    """One session's members in this process and what the hub knows about it.

    The access facts (owner, sharing, collaborators) and ``last_seq`` are read
    from the database when the room opens and then kept current by events, so a
    connect to a live room needs no query; ``ring`` holds the newest message
    frames (seq -> payload) for resumes. ``facts_known`` is False until the
    facts were read, and again once events may have been missed (a broker
    outage, a deletion): then a connect reads the database as for a new room."""

    session_id: uuid.UUID
    # Each user's sockets in this room: the keys are who is present here.
    members: dict[uuid.UUID, set[Connection]] = field(default_factory=dict)
    # Every socket, in arrival order (the broadcast loop's list).
    conns: dict[Connection, None] = field(default_factory=dict)
    typing: dict[uuid.UUID, TypingState] = field(default_factory=dict)
    # Message frames are released in seq order (see Hub._on_message).
    next_seq: int | None = None
    pending: dict[int, MessageSent] = field(default_factory=dict)
    gap_timer: asyncio.TimerHandle | None = None
    # Access facts and the seq of the last message frame released to the room.
    facts_known: bool = False
    owner_id: uuid.UUID | None = None
    is_shared: bool = False
    collaborators: set[uuid.UUID] = field(default_factory=set)
    last_seq: int = 0
    # Every message with ring_floor < seq <= last_seq that still exists is in
    # ring (None: the ring cannot answer; the database does).
    ring: dict[int, bytes] = field(default_factory=dict)
    ring_floor: int | None = None
    # Who is present over every process (user_id -> email), and the net
    # changes not yet sent in a presence frame.
    online: dict[uuid.UUID, str] = field(default_factory=dict)
    presence_pending: dict[uuid.UUID, tuple[str, bool]] = field(default_factory=dict)
    presence_sent: float = float("-inf")
    presence_timer: asyncio.TimerHandle | None = None
    # Broadcasts coalesced while a member's pipelined frames are handled
    # (Hub.cork): (payload, frame, seq), written together by flush_outbox.
    corks: int = 0
    outbox: list[tuple[bytes, bytes, int | None]] = field(default_factory=list)
    outbox_started: float = 0.0
    flush_outbox: Callable[[], None] = lambda: None

    @property
    def size(self) -> int:
        return len(self.conns)

    def connections(self) -> list[Connection]:
        return list(self.conns)

    def facts_for(self, user_id: uuid.UUID) -> SessionFacts:
        assert self.owner_id is not None
        return SessionFacts(self.owner_id, self.is_shared, user_id in self.collaborators)

    def ring_append(self, seq: int, payload: bytes, size: int) -> None:
        if seq <= self.last_seq:  # a late frame after a skipped gap: the ring has holes
            self.ring.clear()
            self.ring_floor = None
            return
        if self.ring_floor is None or seq != self.last_seq + 1:
            # Not contiguous (a gap was skipped, a late frame, a new ring): restart.
            self.ring.clear()
            self.ring_floor = seq - 1
        self.ring[seq] = payload
        while len(self.ring) > size:
            self.ring_floor = next(iter(self.ring))
            del self.ring[self.ring_floor]

    def ring_since(self, since: int) -> list[tuple[int, bytes]] | None:
        """Every stored message after ``since``, or None when the ring does not reach back."""
        if self.ring_floor is None or since < self.ring_floor:
            return None
        return [(seq, payload) for seq, payload in self.ring.items() if seq > since]


@dataclass(frozen=True, slots=True)
class LiveRoom:
    """What a connect to a room with live members takes from the hub."""

    facts: SessionFacts
    last_seq: int


Revoked = Callable[[Connection], None]


@dataclass
class AccessHooks:
    """What the hub asks of the identity side when the IdP changes someone's access
    (the defaults serve a hub without one, as in unit tests)."""

    # Apply the revocation to this process's token checks and principal cache.
    revoked: Callable[[UserRevoked], None] = lambda event: None
    # The principal with ``group`` added or removed, at the level that gives.
    relevel: Callable[[Principal, str, bool], Principal] = lambda principal, group, added: principal
    renew_grace: float = 30.0


class Hub:
    """This process's rooms; the broker's :class:`~chatsvc.events.broker.EventHandler`."""

    def __init__(
        self,
        broker: Broker,
        metrics: Metrics,
        typing_coalesce: float,
        typing_timeout: float,
        on_revoked: Revoked,
        reorder_wait: float = 0.5,
        access: AccessHooks | None = None,
        presence_interval: float = 0.25,
        replay_ring: int = 256,
        coalesce_frames: int = 32,
        coalesce_seconds: float = 0.01,
        on_would_revoke: Revoked | None = None,
    ) -> None:
        self._on_would_revoke = on_would_revoke
        self.coalesce_frames = coalesce_frames
        self.coalesce_seconds = coalesce_seconds
        self.reorder_wait = reorder_wait
        self.broker = broker
        self.metrics = metrics
        self.typing_coalesce = typing_coalesce
        self.typing_timeout = typing_timeout
        self.presence_interval = presence_interval
        self.replay_ring = replay_ring
        self.rooms: dict[uuid.UUID, Room] = {}
        # Each user's sockets over every room (for the per-user limit).
        self._by_user: dict[uuid.UUID, set[Connection]] = {}
        self._on_revoked = on_revoked
        self._access = access or AccessHooks()
        self._user_handlers: dict[type[Event], Callable[[Any], object]] = {
            UserRevoked: self._on_user_revoked,
            BrowserSessionsEnded: self._on_browser_sessions_ended,
        }
        self._handlers: dict[type[Event], Callable[[Room, Any], object]] = {
            MessageSent: self._on_message,
            MessageUpdated: self._on_message_updated,
            MessageDeleted: self._on_message_deleted,
            SessionUpdated: self._on_session_updated,
            SessionDeleted: self._on_session_deleted,
            CollaboratorChanged: self._on_collaborator_changed,
            PresenceChanged: self._on_presence,
            TypingChanged: self._on_typing,
        }
        broker.attach(self)

    # --- membership ----------------------------------------------------------
    def room_size(self, session_id: uuid.UUID) -> int:
        room = self.rooms.get(session_id)
        return room.size if room else 0

    def user_connections(self, user_id: uuid.UUID) -> int:
        return len(self._by_user.get(user_id, ()))

    def present_users(self) -> list[tuple[uuid.UUID, uuid.UUID]]:
        return [
            (room.session_id, user_id) for room in self.rooms.values() for user_id in room.members
        ]

    def live_room(self, session_id: uuid.UUID, user_id: uuid.UUID) -> LiveRoom | None:
        """The facts of a room with live members here, when they can be trusted
        (read once, kept current by events, the broker not down)."""
        room = self.rooms.get(session_id)
        if room is None or not room.facts_known or self.broker.status == "down":
            return None
        return LiveRoom(room.facts_for(user_id), room.last_seq)

    def learn_room(
        self,
        session_id: uuid.UUID,
        snapshot: tuple[uuid.UUID, bool, set[uuid.UUID]],
        last_seq: int,
    ) -> None:
        """Facts read from the database for a room this connect opens (or re-reads)."""
        room = self.rooms.get(session_id)
        if room is None:
            return
        room.owner_id, room.is_shared, room.collaborators = snapshot
        room.collaborators = set(room.collaborators)
        if last_seq > room.last_seq:
            room.last_seq = last_seq
            room.ring.clear()
            room.ring_floor = last_seq
        elif room.ring_floor is None:
            room.ring_floor = room.last_seq
            room.ring.clear()
        room.facts_known = True

    def replay_from_ring(
        self, session_id: uuid.UUID, since: int, until: int
    ) -> list[tuple[int, bytes]] | None:
        """The message frames after ``since`` up to ``until`` from the room's ring
        (None when the ring does not reach back that far: ask the database)."""
        room = self.rooms.get(session_id)
        if room is None or not room.facts_known or room.last_seq != until:
            return None
        return room.ring_since(since)

    def add(self, conn: Connection) -> bool:
        """Register a member; True when it is the user's first socket in this process's room."""
        room = self.rooms.get(conn.session_id)
        if room is None:
            room = self.rooms[conn.session_id] = Room(conn.session_id)
            room.flush_outbox = functools.partial(self.flush, room)
        self.flush(room)  # what was broadcast before it joined is not its
        conn.room = room
        sockets = room.members.setdefault(conn.user_id, set())
        first = not sockets
        sockets.add(conn)
        room.conns[conn] = None
        self._by_user.setdefault(conn.user_id, set()).add(conn)
        conn.on_slow = self.metrics.ws_slow_closes.inc
        self.metrics.ws_connections.inc()
        return first

    def remove(self, conn: Connection) -> bool:
        """Unregister; True when it was the user's last socket in this process's room."""
        room = self.rooms.get(conn.session_id)
        sockets = room.members.get(conn.user_id) if room else None
        if room is None or sockets is None or conn not in sockets:
            return False
        self.flush(room)
        conn.room = None
        sockets.discard(conn)
        room.conns.pop(conn, None)
        mine = self._by_user.get(conn.user_id)
        if mine is not None:
            mine.discard(conn)
            if not mine:
                del self._by_user[conn.user_id]
        self.metrics.ws_connections.dec()
        if sockets:
            return False
        del room.members[conn.user_id]
        state = room.typing.pop(conn.user_id, None)
        if state is not None:
            state.cancel()
            if state.is_typing:  # a typist who left has stopped typing
                self.broker.publish(typing_changed(conn, False))
        if not room.members:
            for timer in (room.gap_timer, room.presence_timer):
                if timer is not None:
                    timer.cancel()
            self.rooms.pop(conn.session_id, None)
        return True

    # --- delivery --------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        """Every event comes through here, from this process or another."""
        session_id = getattr(event, "session_id", None)
        if session_id is None:
            self._user_handlers[type(event)](event)
            return
        room = self.rooms.get(session_id)
        if room is not None:
            self._handlers[type(event)](room, event)

    def note_seq(self, session_id: uuid.UUID, last_seq: int) -> None:
        """Start a new room's ordering after the last seq its first member was sent."""
        room = self.rooms.get(session_id)
        if room is not None and room.next_seq is None:
            room.next_seq = last_seq + 1

    def _on_message(self, room: Room, event: MessageSent) -> None:
        """Release message frames in seq order.

        Two senders (on two processes, or two database connections) can commit
        seq 4 and 5 and publish them in the other order. A frame that arrives
        ahead of a gap waits up to ``reorder_wait`` for the missing one; after
        that it goes out anyway (the missing event was lost, e.g. during a
        broker outage, and clients recover it with ``since_seq``)."""
        seq = event.seq
        expected = room.next_seq
        if expected is not None and seq > expected:
            room.pending[seq] = event
            if room.gap_timer is None:
                room.gap_timer = asyncio.get_running_loop().call_later(
                    self.reorder_wait, self._skip_gap, room
                )
            return
        self._send_message(room, event)
        if expected is None or seq == expected:
            room.next_seq = seq + 1
            self._release_pending(room)

    def _send_message(self, room: Room, event: MessageSent) -> None:
        seq = event.seq
        payload = orjson.dumps(frames.message(event.message))
        if room.facts_known:
            room.ring_append(seq, payload, self.replay_ring)
        if seq > room.last_seq:
            room.last_seq = seq
        self.broadcast_payload(room, payload, seq=seq)

    def _on_message_updated(self, room: Room, event: MessageUpdated) -> None:
        seq = int(event.message["seq"])
        if seq in room.ring:  # a resume replays the message as it is now
            room.ring[seq] = orjson.dumps(frames.message(event.message))
        self.broadcast(room, frames.message_updated(event))

    def _on_message_deleted(self, room: Room, event: MessageDeleted) -> None:
        room.ring.pop(event.seq, None)
        self.broadcast(room, frames.message_deleted(event))

    def _release_pending(self, room: Room) -> None:
        while room.next_seq in room.pending:
            seq = room.next_seq
            self._send_message(room, room.pending.pop(seq))
            room.next_seq = seq + 1
        if not room.pending and room.gap_timer is not None:
            room.gap_timer.cancel()
            room.gap_timer = None

    def _skip_gap(self, room: Room) -> None:
        room.gap_timer = None
        if not room.pending:
            return
        room.next_seq = min(room.pending)
        self._release_pending(room)
        if room.pending and room.gap_timer is None:
            room.gap_timer = asyncio.get_running_loop().call_later(
                self.reorder_wait, self._skip_gap, room
            )

    def broadcast(
        self,
        room: Room,
        frame: frames.Frame,
        exclude_user: uuid.UUID | None = None,
        seq: int | None = None,
    ) -> int:
        return self.broadcast_payload(room, orjson.dumps(frame), exclude_user, seq)

    def broadcast_payload(
        self,
        room: Room,
        payload: bytes,
        exclude_user: uuid.UUID | None = None,
        seq: int | None = None,
    ) -> int:
        """The same frame, encoded once (JSON and WebSocket header), to every member.

        While the room is corked (:meth:`cork`) the frame waits in its outbox
        and goes out with the next ones in one write per member (at most
        ``coalesce_frames`` frames or ``coalesce_seconds`` later); a frame that
        leaves someone out first sends what waits. Returns the members written
        to now."""
        entry = (payload, wire.text_frame(payload), seq)
        if room.corks and exclude_user is None:
            outbox = room.outbox
            if not outbox:
                room.outbox_started = time.monotonic()
            outbox.append(entry)
            if (
                len(outbox) >= self.coalesce_frames
                or time.monotonic() - room.outbox_started >= self.coalesce_seconds
            ):
                self.flush(room)
            return 0
        if room.outbox:
            self.flush(room)
        return self._fan_out(room, [entry], exclude_user)

    def cork(self, session_id: uuid.UUID) -> Room | None:
        """Hold the room's broadcasts back (to write them together) until :meth:`uncork`."""
        room = self.rooms.get(session_id)
        if room is not None:
            room.corks += 1
        return room

    def uncork(self, room: Room) -> None:
        room.corks = max(0, room.corks - 1)
        if not room.corks:
            self.flush(room)

    def flush(self, room: Room) -> None:
        """Write what waits in the room's outbox."""
        entries = room.outbox
        if entries:
            room.outbox = []
            self._fan_out(room, entries, None)

    def _fan_out(
        self,
        room: Room,
        entries: list[tuple[bytes, bytes, int | None]],
        exclude_user: uuid.UUID | None,
    ) -> int:
        """The common member (direct writes, nothing held, open) gets every
        entry in one ``transport.write`` here; the others go through
        :meth:`Connection.deliver`, entry by entry. Closing a member here does
        not change ``room.conns`` (the handler removes it)."""
        started = time.perf_counter()
        data = entries[0][1] if len(entries) == 1 else b"".join([e[1] for e in entries])
        seqs = [entry[2] for entry in entries if entry[2] is not None]
        floor = min(seqs) if seqs else 1 << 62
        count = len(entries)
        sent = 0
        for conn in room.conns:
            transport = conn.transport
            if (
                transport is None
                or conn._held is not None
                or conn.replayed_seq >= floor
                or conn.user_id == exclude_user
            ):
                if conn.user_id != exclude_user:
                    for payload, frame, seq in entries:
                        if conn.deliver(payload, frame, seq):
                            sent += 1
                continue
            if conn.closed_with is not None or conn.ws.closed or transport.is_closing():
                continue
            transport.write(data)
            if transport.get_write_buffer_size() > conn._max_bytes:
                conn._too_slow()
            else:
                sent += count
        self.metrics.ws_frames_sent.inc(sent)
        self.metrics.fanout_seconds.observe(time.perf_counter() - started)
        return sent

    # --- access changes --------------------------------------------------------
    def reevaluate(
        self, conn: Connection, before: dict[str, bool], level_changed: bool = False
    ) -> None:
        """Re-apply the policy to a live member: close it, or tell it its rights changed
        (``before``: its permissions before the change)."""
        if conn.closing:
            return
        if not allows(conn.principal, Action.WS_REVOKED, conn.facts):
            self._on_revoked(conn)
            conn.close(ACCESS_REVOKED)
            return
        if (
            not conn.enforcement_closed
            and shadow_refusal(conn.principal, Action.WS_REVOKED, conn.facts) is not None
        ):
            # Shadow mode: enforcement would close it here; it stays open.
            conn.enforcement_closed = True
            if self._on_would_revoke is not None:
                self._on_would_revoke(conn)
        now = conn.permissions
        if now != before or level_changed:
            conn.send_json(frames.permission_changed(conn.principal, conn.can_send, now))

    def _on_user_revoked(self, event: UserRevoked) -> None:
        """The IdP ended or changed a user's access: every socket of theirs opened
        with a token it covers closes, or, for a group change, re-checks at once at
        the level the new groups give and is asked to renew its token (the page does
        that in place) within ``renew_grace`` seconds, else closes."""
        self._access.revoked(event)
        for conn in list(self._by_user.get(event.user_id, ())):
            if conn.closing or conn.principal.issued_at > event.cutoff:
                continue
            if event.group is None:
                self._on_revoked(conn)
                conn.close(ACCESS_REVOKED)
                continue
            before, old = conn.permissions, conn.principal
            conn.principal = self._access.relevel(old, event.group, event.added)
            self.reevaluate(conn, before, level_changed=conn.principal.level != old.level)
            if not conn.closing:
                conn.send_json(frames.error("INVALID_TOKEN", "Token revoked"))
                deadline = min(float(old.expires_at), time.time() + self._access.renew_grace)
                conn.schedule_expiry(deadline, ACCESS_REVOKED)

    def _on_browser_sessions_ended(self, event: BrowserSessionsEnded) -> None:
        ended = set(event.ids)
        for conns in list(self._by_user.values()):
            for conn in list(conns):
                if conn.browser_session in ended and not conn.closing:
                    self._on_revoked(conn)
                    conn.close(ACCESS_REVOKED)

    def _set_facts(self, conn: Connection, facts: SessionFacts) -> None:
        before = conn.permissions
        conn.facts = facts
        self.reevaluate(conn, before)

    def _on_session_updated(self, room: Room, event: SessionUpdated) -> None:
        room.owner_id, room.is_shared = event.owner_id, event.is_shared
        self.broadcast(room, frames.session_updated(event))
        for conn in room.connections():
            self._set_facts(
                conn, SessionFacts(event.owner_id, event.is_shared, conn.facts.is_collaborator)
            )

    def _on_session_deleted(self, room: Room, event: SessionDeleted) -> None:
        room.facts_known = False  # a connect meanwhile asks the database (and finds nothing)
        self.broadcast(room, frames.session_deleted(event))
        for conn in room.connections():
            conn.close(SESSION_DELETED)

    def _on_collaborator_changed(self, room: Room, event: CollaboratorChanged) -> None:
        if event.added:
            room.collaborators.add(event.user_id)
        else:
            room.collaborators.discard(event.user_id)
        for conn in list(room.members.get(event.user_id, ())):
            self._set_facts(conn, conn.facts.with_collaborator(event.added))

    def resync(
        self,
        session_id: uuid.UUID,
        snapshot: tuple[uuid.UUID, bool, set[uuid.UUID]] | None,
        messages: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Apply what was read from the database after events may have been missed:
        the access facts, then the stored messages from the room's next seq on
        (oldest first, read *before* the facts, so none was committed after a
        revocation they show).

        The messages go through the room's ordering as ``MessageSent`` events
        would: a seq the room already passed (its live event won the race) or
        holds is skipped, the rest wait in ``pending`` and go out in order. Every
        message up to the newest one read that still exists was read, so a seq
        up to it that is neither read nor pending was deleted, and nothing waits
        for it. Each member then drops a later (live) copy of a seq given here,
        as after a resume's backlog."""
        room = self.rooms.get(session_id)
        if room is None:
            return
        # Messages may have been missed too: the next connect reads the database
        # (last_seq, backlog) and the ring starts again.
        room.facts_known = False
        room.ring.clear()
        room.ring_floor = None
        if snapshot is None:
            self._on_session_deleted(room, SessionDeleted(session_id))
            return
        owner, shared, collaborators = snapshot
        room.owner_id, room.is_shared, room.collaborators = owner, shared, set(collaborators)
        for conn in room.connections():
            self._set_facts(conn, SessionFacts(owner, shared, conn.user_id in collaborators))
        if room.next_seq is None or not messages:
            return  # (a room still starting is caught up by its first member's backlog)
        top = int(messages[-1]["seq"])
        for message in messages:
            seq = int(message["seq"])
            if seq >= room.next_seq and seq not in room.pending:
                room.pending[seq] = MessageSent(session_id, message)
        while True:
            self._release_pending(room)
            if room.next_seq > top:
                break
            waiting = [seq for seq in room.pending if seq <= top]
            room.next_seq = min(waiting) if waiting else top + 1  # past deleted seqs
        for conn in room.connections():
            conn.replayed_seq = max(conn.replayed_seq, top)

    # --- presence ------------------------------------------------------------------
    def online(self, session_id: uuid.UUID) -> dict[uuid.UUID, str]:
        room = self.rooms.get(session_id)
        return room.online if room is not None else {}

    def learn_roster(self, session_id: uuid.UUID, roster: dict[uuid.UUID, str]) -> None:
        """Users present on other processes when this process's room opened."""
        room = self.rooms.get(session_id)
        if room is not None:
            for user_id, email in roster.items():
                room.online.setdefault(user_id, email)

    def _on_presence(self, room: Room, event: PresenceChanged) -> None:
        """Coalesce per room: the first change in a quiet room goes out at once;
        the next ones wait for the window's end and go out together. A user who
        joins and leaves within one window is in neither list."""
        user_id = event.user_id
        if event.joined:
            room.online[user_id] = event.user_email
        else:
            room.online.pop(user_id, None)
        pending = room.presence_pending
        before = pending.pop(user_id, None)
        if before is None or before[1] == event.joined:
            pending[user_id] = (event.user_email, event.joined)
        if room.presence_timer is not None:
            return
        wait = room.presence_sent + self.presence_interval - time.monotonic()
        if wait <= 0:
            self._flush_presence(room)
        else:
            room.presence_timer = asyncio.get_running_loop().call_later(
                wait, self._flush_presence, room
            )

    def _flush_presence(self, room: Room) -> None:
        room.presence_timer = None
        if not room.presence_pending:
            return
        changes, room.presence_pending = room.presence_pending, {}
        room.presence_sent = time.monotonic()
        # A change of one user alone is not sent to that user's own sockets (its
        # connected frame had it); in a batch, a member may find itself listed.
        only = next(iter(changes)) if len(changes) == 1 else None
        frame = frames.presence(changes, len(room.online), _now_iso())
        self.broadcast(room, frame, exclude_user=only)

    # --- typing ------------------------------------------------------------------
    def typing(self, conn: Connection, is_typing: bool) -> None:
        """Coalesce per user: at most one change goes out per window. The first
        change in a quiet window goes out at once; later ones only set what the
        user wants now, and the window's end sends that if it differs from what
        the others last saw (so true/false flapping costs one frame per window).
        A repeated ``true`` after the window refreshes it; silence ends typing
        after the timeout."""
        room = self.rooms.get(conn.session_id)
        if room is None:
            return
        state = room.typing.setdefault(conn.user_id, TypingState())
        if state.stop_timer is not None:
            state.stop_timer.cancel()
            state.stop_timer = None
        loop = asyncio.get_running_loop()
        if is_typing:
            state.stop_timer = loop.call_later(self.typing_timeout, self._typing_timed_out, conn)
        state.wanted = is_typing
        if state.flush_timer is not None:
            return  # the window's end sends what is wanted then
        now = time.monotonic()
        if is_typing == state.is_typing and (
            not is_typing or now - state.last_broadcast < self.typing_coalesce
        ):
            return
        wait = state.last_broadcast + self.typing_coalesce - now
        if wait <= 0:
            self._send_typing(conn, state, is_typing)
        else:
            state.flush_timer = loop.call_later(wait, self._flush_typing, conn, state)

    def _on_typing(self, room: Room, event: TypingChanged) -> None:
        # The user's sockets here share the state the others saw, wherever it was sent.
        if event.user_id in room.members:
            state = room.typing.setdefault(event.user_id, TypingState())
            if state.is_typing != event.is_typing:
                state.is_typing = state.wanted = event.is_typing
                state.last_broadcast = time.monotonic()
        self.broadcast(room, frames.typing(event), exclude_user=event.user_id)

    def _send_typing(self, conn: Connection, state: TypingState, is_typing: bool) -> None:
        state.is_typing = is_typing
        state.last_broadcast = time.monotonic()
        self.broker.publish(typing_changed(conn, is_typing))

    def _flush_typing(self, conn: Connection, state: TypingState) -> None:
        state.flush_timer = None
        if state.wanted != state.is_typing:  # (the timers die with the user's last socket)
            self._send_typing(conn, state, state.wanted)

    def _typing_timed_out(self, conn: Connection) -> None:
        room = self.rooms.get(conn.session_id)
        state = room.typing.get(conn.user_id) if room else None
        if state is None or not state.is_typing:
            return
        state.stop_timer = None
        state.wanted = False
        if state.flush_timer is not None:
            state.flush_timer.cancel()
            state.flush_timer = None
        self._send_typing(conn, state, False)

    # --- shutdown ----------------------------------------------------------------
    async def close_all(self, why: Disconnect = SHUTDOWN) -> None:
        conns = [conn for sockets in list(self._by_user.values()) for conn in list(sockets)]
        for conn in conns:
            conn.close(why)
        await asyncio.gather(*(conn.finish() for conn in conns), return_exceptions=True)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def typing_changed(conn: Connection, is_typing: bool) -> TypingChanged:
    p = conn.principal
    return TypingChanged(conn.session_id, p.user_id, p.email, is_typing, _now_iso())


def presence_changed(conn: Connection, joined: bool) -> PresenceChanged:
    p = conn.principal
    return PresenceChanged(conn.session_id, p.user_id, p.email, joined, _now_iso())
