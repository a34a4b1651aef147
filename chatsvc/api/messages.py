"""Handlers for chat messages (declared in :mod:`chatsvc.api.routes`)."""

from __future__ import annotations

from typing import Any

from chatsvc.api.query import MessageListQuery
from chatsvc.api.routing import Call, Reply
from chatsvc.service import messages
from chatsvc.service.inputs import MessageCreate, MessageUpdate


async def list_messages(call: Call[MessageListQuery, None]) -> list[dict[str, Any]]:
    query = call.query
    return await messages.list_messages(
        call.app,
        call.principal,
        call.id("session_id"),
        query.limit,
        query.offset,
        query.after_seq,
        query.before_seq,
    )


async def create_message(call: Call[None, MessageCreate]) -> Reply:
    message, created = await messages.send_message(
        call.app, call.principal, call.id("session_id"), call.body
    )
    return Reply(message, 201 if created else 200)


async def update_message(call: Call[None, MessageUpdate]) -> dict[str, Any]:
    return await messages.update_message(call.app, call.principal, call.id("message_id"), call.body)


async def delete_message(call: Call[None, None]) -> None:
    await messages.delete_message(call.app, call.principal, call.id("message_id"))
