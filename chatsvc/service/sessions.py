"""Chat sessions: list, create, read, update (content and sharing), delete."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from chatsvc.auth.principal import Principal
from chatsvc.events import SessionDeleted, SessionUpdated
from chatsvc.keys import BROKER, DB_SESSIONS
from chatsvc.policy import (
    Action,
    SessionFacts,
    check,
    list_scope,
    permissions,
    session_update_actions,
)
from chatsvc.service.access import authorized_session
from chatsvc.service.inputs import SessionCreate, SessionUpdate, reject_nulls
from chatsvc.store import messages, sessions

CONTENT_FIELDS = frozenset({"title", "description", "chat_settings"})
# The single-session GET carries the newest messages only; older ones are paged
# with GET .../messages?before_seq=, so the answer stays bounded.
SESSION_MESSAGES = 100


def with_permissions(
    session: dict[str, Any], principal: Principal, facts: SessionFacts
) -> dict[str, Any]:
    """The session as this caller sees it: with what they may do with it."""
    session["permissions"] = permissions(principal, facts)
    return session


async def list_sessions(
    app: web.Application, principal: Principal, limit: int, offset: int, include_messages: bool
) -> list[dict[str, Any]]:
    async with app[DB_SESSIONS]() as db:
        listed = await sessions.list_sessions(
            db, list_scope(principal), principal.user_id, limit, offset, include_messages
        )
    return [with_permissions(item, principal, facts) for item, facts in listed]


async def create_session(
    app: web.Application, principal: Principal, body: SessionCreate
) -> dict[str, Any]:
    async with app[DB_SESSIONS]() as db:
        created = await sessions.create_session(
            db, principal.user_id, body.title, body.description, body.is_shared, body.chat_settings
        )
    return with_permissions(
        created, principal, SessionFacts(principal.user_id, body.is_shared, False)
    )


async def get_session(
    app: web.Application, principal: Principal, session_id: uuid.UUID, include_messages: bool
) -> dict[str, Any]:
    async with app[DB_SESSIONS]() as db:
        session, facts = await authorized_session(db, principal, session_id, Action.SESSION_READ)
        with_permissions(session, principal, facts)
        if include_messages:
            newest = await messages.list_messages(
                db, session_id, SESSION_MESSAGES + 1, before_seq=session["last_seq"] + 1
            )
            session["messages"] = newest[-SESSION_MESSAGES:]
            session["has_more_messages"] = len(newest) > SESSION_MESSAGES
    return session


async def update_session(
    app: web.Application, principal: Principal, session_id: uuid.UUID, body: SessionUpdate
) -> dict[str, Any]:
    changes = reject_nulls(body)
    async with app[DB_SESSIONS]() as db:
        session, facts = await authorized_session(db, principal, session_id)
        sharing = "is_shared" in changes and changes["is_shared"] != session["is_shared"]
        if not sharing:
            changes.pop("is_shared", None)  # setting the current value is no change of sharing
        for action in session_update_actions(
            content=bool(CONTENT_FIELDS & changes.keys()), sharing=sharing
        ):
            check(principal, action, facts)
        if not changes:
            return with_permissions(session, principal, facts)
        updated = await sessions.update_session(db, session_id, changes)
    app[BROKER].publish(SessionUpdated(session_id, updated))  # every viewer's own rights differ
    now = SessionFacts(facts.owner_id, bool(updated["is_shared"]), facts.is_collaborator)
    return with_permissions(dict(updated), principal, now)


async def delete_session(app: web.Application, principal: Principal, session_id: uuid.UUID) -> None:
    async with app[DB_SESSIONS]() as db:
        await authorized_session(db, principal, session_id, Action.SESSION_DELETE)
        await sessions.delete_session(db, session_id)
    app[BROKER].publish(SessionDeleted(session_id))
