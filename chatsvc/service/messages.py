"""Messages: list, send (REST ``POST .../messages`` and the WebSocket ``message``
frame alike), edit and delete."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from chatsvc.auth.principal import Principal
from chatsvc.errors import FieldError, RateLimited, ValidationFailed
from chatsvc.events import MessageDeleted, MessageSent, MessageUpdated
from chatsvc.keys import BROKER, DB_SESSIONS, METRICS, RATE_LIMITER
from chatsvc.policy import Action, check_message_type
from chatsvc.service.access import authorized_message, authorized_session
from chatsvc.service.inputs import MessageCreate, MessageUpdate, reject_nulls
from chatsvc.store import messages


def check_rate(app: web.Application, principal: Principal) -> None:
    limiter = app[RATE_LIMITER]
    wait = limiter.acquire(principal.user_id)
    if wait > 0:
        app[METRICS].rate_limited.inc()
        raise RateLimited(limiter.retry_after_header(wait))


async def list_messages(
    app: web.Application,
    principal: Principal,
    session_id: uuid.UUID,
    limit: int,
    offset: int,
    after_seq: int | None,
    before_seq: int | None,
) -> list[dict[str, Any]]:
    async with app[DB_SESSIONS]() as db:
        await authorized_session(db, principal, session_id, Action.MESSAGE_LIST)
        return await messages.list_messages(db, session_id, limit, offset, after_seq, before_seq)


async def send_message(
    app: web.Application,
    principal: Principal,
    session_id: uuid.UUID,
    body: MessageCreate,
    action: Action = Action.MESSAGE_SEND,
) -> tuple[dict[str, Any], bool]:
    """Store and publish; return the message and whether it is new (a retry returns the first)."""
    async with app[DB_SESSIONS]() as db:
        await authorized_session(db, principal, session_id, action)
        check_message_type(principal, action, body.message_type)
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
        app[METRICS].messages.labels("sent").inc()
        app[BROKER].publish(MessageSent(session_id, message))
    return message, created


async def update_message(
    app: web.Application, principal: Principal, message_id: uuid.UUID, body: MessageUpdate
) -> dict[str, Any]:
    changes = reject_nulls(body)
    if not changes:
        raise ValidationFailed("content or metadata is required", [FieldError("body", "is empty")])
    async with app[DB_SESSIONS]() as db:
        message = await authorized_message(db, principal, message_id, Action.MESSAGE_UPDATE)
        check_rate(app, principal)  # an edit is broadcast like a send, and costs like one
        updated = await messages.update_message(db, message, changes)
    app[METRICS].messages.labels("edited").inc()
    app[BROKER].publish(MessageUpdated(updated["chat_session_id"], updated))
    return updated


async def delete_message(app: web.Application, principal: Principal, message_id: uuid.UUID) -> None:
    async with app[DB_SESSIONS]() as db:
        message = await authorized_message(db, principal, message_id, Action.MESSAGE_DELETE)
        check_rate(app, principal)
        await messages.delete_message(db, message_id)
    app[METRICS].messages.labels("deleted").inc()
    app[BROKER].publish(MessageDeleted(message["chat_session_id"], message_id, message["seq"]))
