"""The broker: how an event published by one process reaches the hubs of all.

``MemoryBroker`` (the default) serves one process. ``RedisBroker`` relays
through Redis pub/sub so that several processes serve the same sessions; it
lives in :mod:`chatsvc.realtime.redis_broker`. Either way the publishing
process delivers to its own members at once, so a broker outage never stops
local delivery.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

Deliver = Callable[[uuid.UUID, dict[str, Any]], None]


class Broker:
    """Interface, and the in-process implementation."""

    status = "none"  # "none" (single process), "up" or "down"

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    def attach(self, deliver: Deliver) -> None:
        self._deliver = deliver

    def publish(self, session_id: uuid.UUID, event: dict[str, Any]) -> None:
        """Deliver locally now; relay to other processes without waiting."""
        if self._deliver is not None:
            self._deliver(session_id, event)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def presence_join(self, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        """Record the user's first local socket; True when they are new across all processes."""
        return True

    async def presence_leave(self, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        """Record that the user's last local socket closed; True when none is left anywhere."""
        return True


MemoryBroker = Broker
