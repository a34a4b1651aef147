"""The hub: this process's live WebSocket members, grouped in rooms by session.

A broadcast serialises its frame once and appends the same bytes to every
member's bounded queue without awaiting any socket; one writer task per member
drains its queue. A member whose queue is full is closed with 1013, so a slow
or stalled client never holds back the others.

Events reach :meth:`Hub.on_event` from the broker, whether published by this
process or (through Redis) by another one, so REST changes, WebSocket sends and
revocations behave the same everywhere. The hub dispatches on the event's type.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    CollaboratorChanged,
    Event,
    MessageDeleted,
    MessageSent,
    MessageUpdated,
    PresenceChanged,
    SessionDeleted,
    SessionUpdated,
    TypingChanged,
)
from chatsvc.events.broker import Broker
from chatsvc.metrics import Metrics
from chatsvc.policy import Action, SessionFacts, allows
from chatsvc.realtime import frames
from chatsvc.realtime.frames import ACCESS_REVOKED, SESSION_DELETED, SHUTDOWN, TOO_SLOW, Disconnect

log = logging.getLogger("chatsvc.realtime")


_connection_ids = itertools.count(1)


class ConnectionLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"conn={self.extra['conn']} {msg}", kwargs  # type: ignore[index]


class Connection:
    """One member's socket: its facts, its bounded queue and its writer task."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        principal: Principal,
        session_id: uuid.UUID,
        facts: SessionFacts,
        max_frames: int,
        max_bytes: int,
        request_id: str | None,
        client_ip: str | None,
        close_timeout: float,
    ) -> None:
        self.id = f"ws{next(_connection_ids)}"
        self.ws = ws
        self.principal = principal
        self.session_id = session_id
        self.facts = facts
        self.request_id = request_id
        self.client_ip = client_ip
        self.log = ConnectionLog(log, {"conn": self.id})
        self._queue: deque[bytes] = deque()
        self._max = max_frames
        self._max_bytes = max_bytes
        self._close_timeout = close_timeout
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._expiry: asyncio.TimerHandle | None = None
        # While the backlog of a resume is replayed, live message frames wait here.
        self._held: list[tuple[bytes, int | None]] | None = None
        self.replayed_seq = 0
        self.closed_with: Disconnect | None = None  # when the server closed it
        self.on_slow: Callable[[], None] | None = None  # set by the hub: counts 1013 closes

    @property
    def user_id(self) -> uuid.UUID:
        return self.principal.user_id

    @property
    def can_send(self) -> bool:
        return allows(self.principal, Action.WS_SEND, self.facts)

    @property
    def closing(self) -> bool:
        return self._closing or self.ws.closed

    # --- sending ---------------------------------------------------------
    def enqueue(self, data: bytes, seq: int | None = None) -> bool:
        """Queue a frame; False (and a 1013 close) when the member cannot keep up."""
        if self._closing:
            return False
        if seq is not None and seq <= self.replayed_seq:
            return True  # the backlog already had it (its live copy came late)
        if self._held is not None:
            if len(self._held) >= self._max:
                self._too_slow()
                return False
            self._held.append((data, seq))
            return True
        if len(self._queue) >= self._max or self._queued_bytes + len(data) > self._max_bytes:
            self._too_slow()
            return False
        self._queued_bytes += len(data)
        self._queue.append(data)
        self._wakeup.set()
        return True

    def _too_slow(self) -> None:
        if self.on_slow is not None:
            self.on_slow()
        self.close_soon(TOO_SLOW)

    def send_json(self, frame: dict[str, Any]) -> bool:
        return self.enqueue(orjson.dumps(frame))

    def hold_live_frames(self) -> None:
        self._held = []

    def release_held_frames(self) -> None:
        """End a resume: queue what arrived meanwhile, minus what the backlog already had."""
        held, self._held = self._held or [], None
        for data, seq in held:
            if seq is None or seq > self.replayed_seq:
                self.enqueue(data, seq)

    def start_writer(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name=f"{self.id}-writer")

    async def _write_loop(self) -> None:
        queue, ws = self._queue, self.ws
        try:
            while True:
                if not queue:
                    self._idle.set()
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    self._idle.clear()
                # Drain everything queued per wake-up: no task switch per frame.
                while queue:
                    data = queue.popleft()
                    self._queued_bytes -= len(data)
                    await ws.send_frame(data, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError) as exc:
            self.log.debug("event=ws_write_failed error=%s", type(exc).__name__)

    # --- closing -----------------------------------------------------------
    def close_soon(self, why: Disconnect) -> None:
        """Close from any task (the hub's broadcast must not wait for it)."""
        if self._closing:
            return
        self._closing = True
        asyncio.get_running_loop().create_task(self._close(why))

    async def close(self, why: Disconnect) -> None:
        if self._closing:
            return
        self._closing = True
        await self._close(why)

    async def _close(self, why: Disconnect) -> None:
        self.closed_with = why
        self.log.info("event=ws_close code=%d reason=%r", why.code, why.reason)
        self.cancel_expiry()
        if self._writer is not None:
            if why is not TOO_SLOW:
                # Let queued frames (e.g. session_deleted) go out before the close frame.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._flush(), self._close_timeout)
            self._writer.cancel()
        self._queue.clear()
        self._queued_bytes = 0
        # A peer that stopped reading cannot take the close frame either: bound the wait.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.ws.close(code=why.code, message=why.reason.encode()), self._close_timeout
            )

    async def _flush(self) -> None:
        if self._queue and self._writer is not None and not self._writer.done():
            await self._idle.wait()

    async def stop_writer(self) -> None:
        self._closing = True
        self.cancel_expiry()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer

    def schedule_expiry(self, expires_at: float) -> None:
        self.cancel_expiry()
        delay = max(0.0, expires_at - time.time())
        self._expiry = asyncio.get_running_loop().call_later(
            delay, self.close_soon, frames.TOKEN_EXPIRED
        )

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
    session_id: uuid.UUID
    # Each user's sockets in this room: the keys are who is present here.
    members: dict[uuid.UUID, set[Connection]] = field(default_factory=dict)
    size: int = 0
    typing: dict[uuid.UUID, TypingState] = field(default_factory=dict)
    # Message frames are released in seq order (see Hub._on_message).
    next_seq: int | None = None
    pending: dict[int, MessageSent] = field(default_factory=dict)
    gap_timer: asyncio.TimerHandle | None = None

    def connections(self) -> list[Connection]:
        return [conn for sockets in self.members.values() for conn in sockets]


Revoked = Callable[[Connection], None]


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
    ) -> None:
        self.reorder_wait = reorder_wait
        self.broker = broker
        self.metrics = metrics
        self.typing_coalesce = typing_coalesce
        self.typing_timeout = typing_timeout
        self.rooms: dict[uuid.UUID, Room] = {}
        # Each user's sockets over every room (for the per-user limit).
        self._by_user: dict[uuid.UUID, set[Connection]] = {}
        self._on_revoked = on_revoked
        self._handlers: dict[type[Event], Callable[[Room, Any], object]] = {
            MessageSent: self._on_message,
            MessageUpdated: lambda room, e: self.broadcast(room, frames.message_updated(e)),
            MessageDeleted: lambda room, e: self.broadcast(room, frames.message_deleted(e)),
            SessionUpdated: self._on_session_updated,
            SessionDeleted: self._on_session_deleted,
            CollaboratorChanged: self._on_collaborator_changed,
            PresenceChanged: lambda room, e: self.broadcast(
                room, frames.presence(e), exclude_user=e.user_id
            ),
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

    def add(self, conn: Connection) -> bool:
        """Register a member; True when it is the user's first socket in this process's room."""
        room = self.rooms.setdefault(conn.session_id, Room(conn.session_id))
        sockets = room.members.setdefault(conn.user_id, set())
        first = not sockets
        sockets.add(conn)
        room.size += 1
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
        sockets.discard(conn)
        room.size -= 1
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
            if room.gap_timer is not None:
                room.gap_timer.cancel()
            self.rooms.pop(conn.session_id, None)
        return True

    # --- delivery --------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        """Every event for a session comes through here, from this process or another."""
        room = self.rooms.get(event.session_id)
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
        self.broadcast(room, frames.message(event.message), seq=event.seq)

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
        started = time.perf_counter()
        data = orjson.dumps(frame)  # once for the whole room
        sent = 0
        for user_id, sockets in list(room.members.items()):
            if user_id == exclude_user:
                continue
            for conn in list(sockets):
                if conn.enqueue(data, seq):
                    sent += 1
        self.metrics.ws_frames_sent.inc(sent)
        self.metrics.fanout_seconds.observe(time.perf_counter() - started)
        return sent

    # --- access changes --------------------------------------------------------
    def reevaluate(self, conn: Connection, could_send: bool, level_changed: bool = False) -> None:
        """Re-apply the policy to a live member: close it, or tell it its rights changed."""
        if conn.closing:
            return
        if not allows(conn.principal, Action.WS_REVOKED, conn.facts):
            self._on_revoked(conn)
            conn.close_soon(ACCESS_REVOKED)
            return
        can_send = conn.can_send
        if can_send != could_send or level_changed:
            conn.send_json(frames.permission_changed(conn.principal, can_send))

    def _set_facts(self, conn: Connection, facts: SessionFacts) -> None:
        could_send = conn.can_send
        conn.facts = facts
        self.reevaluate(conn, could_send)

    def _on_session_updated(self, room: Room, event: SessionUpdated) -> None:
        self.broadcast(room, frames.session_updated(event))
        for conn in room.connections():
            self._set_facts(
                conn, SessionFacts(event.owner_id, event.is_shared, conn.facts.is_collaborator)
            )

    def _on_session_deleted(self, room: Room, event: SessionDeleted) -> None:
        self.broadcast(room, frames.session_deleted(event))
        for conn in room.connections():
            conn.close_soon(SESSION_DELETED)

    def _on_collaborator_changed(self, room: Room, event: CollaboratorChanged) -> None:
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
        if snapshot is None:
            self._on_session_deleted(room, SessionDeleted(session_id))
            return
        owner, shared, collaborators = snapshot
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
        await asyncio.gather(
            *(
                conn.close(why)
                for sockets in list(self._by_user.values())
                for conn in list(sockets)
            ),
            return_exceptions=True,
        )


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def typing_changed(conn: Connection, is_typing: bool) -> TypingChanged:
    p = conn.principal
    return TypingChanged(conn.session_id, p.user_id, p.email, is_typing, _now_iso())


def presence_changed(conn: Connection, joined: bool) -> PresenceChanged:
    p = conn.principal
    return PresenceChanged(conn.session_id, p.user_id, p.email, joined, _now_iso())
