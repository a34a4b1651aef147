"""The events a change publishes, as typed values.

The use cases publish them after their change committed; the broker carries
them to every process (:mod:`chatsvc.events.broker`, :mod:`chatsvc.events.redis`)
and the realtime hub dispatches on their type. They carry data, not frames: how
an event looks on a WebSocket is :mod:`chatsvc.realtime.frames`' business.

Over Redis an event travels as ``{"k": kind, ...fields}`` JSON; :func:`encode`
and :func:`decode` are the only two places that know that form.
"""

from __future__ import annotations

import uuid
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar

import orjson


@dataclass(frozen=True, slots=True)
class Event:
    kind: ClassVar[str]


@dataclass(frozen=True, slots=True)
class SessionEvent(Event):
    """An event about one chat session: its room's members are told."""

    session_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class MessageSent(SessionEvent):
    kind: ClassVar[str] = "message_sent"
    message: dict[str, Any]

    @property
    def seq(self) -> int:
        return int(self.message["seq"])


@dataclass(frozen=True, slots=True)
class MessageUpdated(SessionEvent):
    kind: ClassVar[str] = "message_updated"
    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MessageDeleted(SessionEvent):
    kind: ClassVar[str] = "message_deleted"
    message_id: uuid.UUID
    seq: int


@dataclass(frozen=True, slots=True)
class SessionUpdated(SessionEvent):
    kind: ClassVar[str] = "session_updated"
    session: dict[str, Any]

    @property
    def owner_id(self) -> uuid.UUID:
        return uuid.UUID(str(self.session["user_id"]))

    @property
    def is_shared(self) -> bool:
        return bool(self.session["is_shared"])


@dataclass(frozen=True, slots=True)
class SessionDeleted(SessionEvent):
    kind: ClassVar[str] = "session_deleted"


@dataclass(frozen=True, slots=True)
class CollaboratorChanged(SessionEvent):
    """Not shown to clients: the hub re-checks that user's sockets."""

    kind: ClassVar[str] = "collaborator_changed"
    user_id: uuid.UUID
    added: bool


@dataclass(frozen=True, slots=True)
class PresenceChanged(SessionEvent):
    """A user's first socket in the session opened (``joined``) or their last one closed."""

    kind: ClassVar[str] = "presence_changed"
    user_id: uuid.UUID
    user_email: str
    joined: bool
    timestamp: str


@dataclass(frozen=True, slots=True)
class TypingChanged(SessionEvent):
    kind: ClassVar[str] = "typing_changed"
    user_id: uuid.UUID
    user_email: str
    is_typing: bool
    timestamp: str


@dataclass(frozen=True, slots=True)
class UserRevoked(Event):
    """The identity provider ended (``group`` None) or changed (a membership of
    ``group`` ``added`` or removed) a user's access at ``cutoff`` (epoch seconds):
    their tokens issued at or before it are refused until ``until``."""

    kind: ClassVar[str] = "user_revoked"
    user_id: uuid.UUID
    cutoff: float
    until: float
    group: str | None = None
    added: bool = False


@dataclass(frozen=True, slots=True)
class BrowserSessionsEnded(Event):
    """Browser sessions ended by the IdP (back-channel logout): the sockets opened
    through them close. ``ids`` are the sessions' stored ids (cookie digests)."""

    kind: ClassVar[str] = "browser_sessions_ended"
    ids: tuple[str, ...]


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        MessageSent,
        MessageUpdated,
        MessageDeleted,
        SessionUpdated,
        SessionDeleted,
        CollaboratorChanged,
        PresenceChanged,
        TypingChanged,
        UserRevoked,
        BrowserSessionsEnded,
    )
}
_UUID_FIELDS = frozenset({"session_id", "message_id", "user_id"})


class BadEvent(ValueError):
    """Bytes from the broker that are not an event of this version."""


def encode(event: Event) -> dict[str, Any]:
    """The event as a JSON-ready mapping (orjson writes the UUIDs and datetimes)."""
    body: dict[str, Any] = {"k": event.kind}
    for f in fields(event):
        body[f.name] = getattr(event, f.name)
    return body


def decode(body: Any) -> Event:
    """The inverse of :func:`encode` (values that were datetimes arrive as ISO strings)."""
    try:
        cls = EVENT_TYPES[body["k"]]
        values = {}
        for f in fields(cls):
            value = body.get(f.name, f.default) if f.default is not MISSING else body[f.name]
            if f.name in _UUID_FIELDS:
                value = uuid.UUID(value)
            elif f.name == "ids":
                value = tuple(str(item) for item in value)
            values[f.name] = value
        return cls(**values)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadEvent(str(exc)) from None


def dumps(event: Event) -> bytes:
    return orjson.dumps(encode(event))
