"""The broker: how an event published by one process reaches the hubs of all.

:class:`Broker` is the interface; :class:`MemoryBroker` (the default) serves one
process and :class:`chatsvc.events.redis.RedisBroker` relays through Redis
pub/sub so that several processes serve the same sessions. Either way the
publishing process delivers to its own subscriber at once, so a broker outage
never stops local delivery.

The subscriber (the realtime hub) implements :class:`EventHandler`, the way
centrifuge's broker hands publications to a typed handler: events in, and the
users this process holds present, which a shared presence store must refresh.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Literal, Protocol

from chatsvc.events import Event

BrokerStatus = Literal["none", "up", "down"]


class EventHandler(Protocol):
    def on_event(self, event: Event) -> None: ...

    def present_users(self) -> Iterable[tuple[uuid.UUID, uuid.UUID]]:
        """``(session_id, user_id)`` of every user with a socket in this process."""
        ...


class Broker(Protocol):
    @property
    def status(self) -> BrokerStatus:
        """``none`` (single process), ``up`` or ``down``."""
        ...

    def attach(self, handler: EventHandler) -> None: ...

    def publish(self, event: Event) -> None:
        """Deliver locally now; relay to other processes without waiting. Never fails."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def presence_join(self, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        """Record the user's first local socket; True when they are new across all processes."""
        ...

    async def presence_leave(self, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        """Record that the user's last local socket closed; True when none is left anywhere."""
        ...

    async def presence_members(self, session_id: uuid.UUID) -> set[uuid.UUID]:
        """Every user with a socket in the session, over every process."""
        ...


class MemoryBroker:
    """One process: publishing is delivering."""

    def __init__(self) -> None:
        self._handler: EventHandler | None = None
        self._present: dict[uuid.UUID, set[uuid.UUID]] = {}

    @property
    def status(self) -> BrokerStatus:
        return "none"

    def attach(self, handler: EventHandler) -> None:
        self._handler = handler

    def publish(self, event: Event) -> None:
        if self._handler is not None:
            self._handler.on_event(event)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def presence_join(self, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        self._present.setdefault(session_id, set()).add(user_id)
        return True

    async def presence_leave(self, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        users = self._present.get(session_id)
        if users is not None:
            users.discard(user_id)
            if not users:
                del self._present[session_id]
        return True

    async def presence_members(self, session_id: uuid.UUID) -> set[uuid.UUID]:
        return set(self._present.get(session_id, ()))
