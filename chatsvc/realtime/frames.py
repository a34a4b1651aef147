"""Every frame the server sends on a chat WebSocket, built here and nowhere else
(see ``docs/protocol.md`` for the wire format), and the named close values."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chatsvc.auth.principal import Principal
from chatsvc.events import (
    MessageDeleted,
    MessageUpdated,
    SessionDeleted,
    SessionUpdated,
    TypingChanged,
)

Frame = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Disconnect:
    """A close code and its reason, used everywhere by name."""

    code: int
    reason: str


POLICY_VIOLATION = 1008
GOING_AWAY = 1001
TRY_AGAIN_LATER = 1013

AUTH_REQUIRED = Disconnect(POLICY_VIOLATION, "Authentication required")
ACCESS_DENIED = Disconnect(POLICY_VIOLATION, "Access denied")
SESSION_NOT_FOUND = Disconnect(POLICY_VIOLATION, "Session not found")
INVALID_SINCE = Disconnect(POLICY_VIOLATION, "Invalid since_seq")
ACCESS_REVOKED = Disconnect(POLICY_VIOLATION, "Access revoked")
SESSION_DELETED = Disconnect(POLICY_VIOLATION, "Session deleted")
TOKEN_EXPIRED = Disconnect(POLICY_VIOLATION, "Token expired")
USER_BUSY = Disconnect(POLICY_VIOLATION, "Too many connections")
ROOM_FULL = Disconnect(TRY_AGAIN_LATER, "Too many connections")
TOO_SLOW = Disconnect(TRY_AGAIN_LATER, "Too slow to keep up")
UNAVAILABLE = Disconnect(TRY_AGAIN_LATER, "Service unavailable")
SHUTDOWN = Disconnect(GOING_AWAY, "Server shutting down")


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


ROSTER_LIMIT = 200  # users listed in ``connected.online``


def connected(
    principal: Principal,
    session_id: uuid.UUID,
    permissions: dict[str, bool],
    last_seq: int,
    online: dict[uuid.UUID, str],
) -> Frame:
    return {
        "type": "connected",
        "session_id": session_id,
        "user_id": principal.user_id,
        "user_email": principal.email,
        "permission": principal.permission,
        "can_send": permissions["send"],
        "permissions": permissions,
        "last_seq": last_seq,
        "online": [
            {"user_id": user_id, "user_email": email}
            for user_id, email in itertools.islice(online.items(), ROSTER_LIMIT)
        ],
        "online_count": len(online),
    }


def message(message: dict[str, Any], frame_type: str = "message") -> Frame:
    """``message`` (and ``message_updated``): the same fields, in the same order."""
    frame = {
        "type": frame_type,
        "message_id": message["id"],
        "seq": message["seq"],
        "content": message["content"],
        "user_id": message["user_id"],
        "user_email": message["user_email"],
        "message_type": message["message_type"],
        "metadata": message["metadata"],
        "client_msg_id": message["client_msg_id"],
        "timestamp": message["created_at"] if frame_type == "message" else message["updated_at"],
    }
    if frame_type == "message_updated":
        frame["is_edited"] = True
    return frame


def message_updated(event: MessageUpdated) -> Frame:
    return message(event.message, "message_updated")


def message_deleted(event: MessageDeleted) -> Frame:
    return {"type": "message_deleted", "message_id": event.message_id, "seq": event.seq}


def session_updated(event: SessionUpdated) -> Frame:
    return {"type": "session_updated", "session": event.session}


def session_deleted(event: SessionDeleted) -> Frame:
    return {"type": "session_deleted", "session_id": event.session_id}


def presence(
    changes: dict[uuid.UUID, tuple[str, bool]], online_count: int, timestamp: str
) -> Frame:
    """Users whose first socket opened (``joined``) or last one closed (``left``)
    since the room's previous presence frame (``changes``: user -> (email, joined))."""
    joined: list[Frame] = []
    left: list[Frame] = []
    for user_id, (email, is_join) in changes.items():
        (joined if is_join else left).append({"user_id": user_id, "user_email": email})
    return {
        "type": "presence",
        "joined": joined,
        "left": left,
        "online_count": online_count,
        "timestamp": timestamp,
    }


def typing(event: TypingChanged) -> Frame:
    return {
        "type": "typing",
        "user_id": event.user_id,
        "user_email": event.user_email,
        "is_typing": event.is_typing,
        "timestamp": event.timestamp,
    }


def permission_changed(principal: Principal, can_send: bool, permissions: dict[str, bool]) -> Frame:
    return {
        "type": "permission_changed",
        "permission": principal.permission,
        "can_send": can_send,
        "permissions": permissions,
    }


def auth_ok(expires_at: float) -> Frame:
    return {"type": "auth_ok", "expires_at": iso(expires_at)}


PONG: Frame = {"type": "pong"}


def error(code: str, text: str) -> Frame:
    return {"type": "error", "code": code, "message": text}
