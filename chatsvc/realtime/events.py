"""The events a change publishes, in their WebSocket frame form.

Each is built once by the code that made the change and published through the
broker; hubs serialise it once and enqueue the same bytes to every member."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from chatsvc.keys import BROKER


def message_frame(message: dict[str, Any], frame_type: str = "message") -> dict[str, Any]:
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


def message_deleted_frame(message_id: uuid.UUID, seq: int) -> dict[str, Any]:
    return {"type": "message_deleted", "message_id": message_id, "seq": seq}


def session_updated_frame(session: dict[str, Any]) -> dict[str, Any]:
    return {"type": "session_updated", "session": session}


def session_deleted_frame(session_id: uuid.UUID) -> dict[str, Any]:
    return {"type": "session_deleted", "session_id": session_id}


def collaborators_changed_event(user_id: uuid.UUID, added: bool) -> dict[str, Any]:
    """Internal (not sent to clients): the hub re-checks that user's sockets."""
    return {"type": "_collaborator", "user_id": user_id, "added": added}


def publish(app: web.Application, session_id: uuid.UUID, event: dict[str, Any]) -> None:
    """Publish after the change committed. Never blocks and never fails the request."""
    app[BROKER].publish(session_id, event)
