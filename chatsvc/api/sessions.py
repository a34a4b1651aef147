"""Handlers for chat sessions (declared in :mod:`chatsvc.api.routes`)."""

from __future__ import annotations

from typing import Any

from chatsvc.api.query import SessionListQuery, SessionQuery
from chatsvc.api.routing import Call
from chatsvc.service import sessions
from chatsvc.service.inputs import SessionCreate, SessionUpdate


async def list_sessions(call: Call[SessionListQuery, None]) -> list[dict[str, Any]]:
    query = call.query
    return await sessions.list_sessions(
        call.app, call.principal, query.limit, query.offset, query.include_messages
    )


async def create_session(call: Call[None, SessionCreate]) -> dict[str, Any]:
    return await sessions.create_session(call.app, call.principal, call.body)


async def get_session(call: Call[SessionQuery, None]) -> dict[str, Any]:
    return await sessions.get_session(
        call.app, call.principal, call.id("session_id"), call.query.include_messages
    )


async def update_session(call: Call[None, SessionUpdate]) -> dict[str, Any]:
    return await sessions.update_session(call.app, call.principal, call.id("session_id"), call.body)


async def delete_session(call: Call[None, None]) -> None:
    await sessions.delete_session(call.app, call.principal, call.id("session_id"))
