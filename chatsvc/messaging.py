"""Sending a message: the one flow behind ``POST .../messages`` and the
WebSocket ``message`` frame (policy, rate limit, gapless store, publish)."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from chatsvc.api.schemas import MessageCreate
from chatsvc.auth.principal import Principal
from chatsvc.errors import RateLimited
from chatsvc.keys import DB_SESSIONS, METRICS, RATE_LIMITER
from chatsvc.policy import Action, authorize
from chatsvc.realtime.events import message_frame, publish
from chatsvc.store import messages, sessions


def check_rate(app: web.Application, principal: Principal) -> None:
    limiter = app[RATE_LIMITER]
    wait = limiter.acquire(principal.user_id)
    if wait > 0:
        app[METRICS].rate_limited.inc()
        raise RateLimited(limiter.retry_after_header(wait))


async def send_message(
    app: web.Application,
    principal: Principal,
    session_id: uuid.UUID,
    body: MessageCreate,
    action: Action = Action.MESSAGE_SEND,
) -> tuple[dict[str, Any], bool]:
    """Store and publish; return the message and whether it is new (a retry returns the first)."""
    async with app[DB_SESSIONS]() as db:
        _, facts = await sessions.load_session(db, session_id, principal.user_id)
        authorize(principal, "message.send", facts, action)
        if body.message_type == "system":
            authorize(principal, "message.send_system", facts, action)
        message, created = await messages.send_message(
            db,
            session_id,
            principal.user_id,
            principal.email,
            body.content,
            body.message_type,
            body.metadata,
            body.client_msg_id,
            admit=lambda: check_rate(app, principal),
        )
    if created:
        publish(app, session_id, message_frame(message))
    return message, created
