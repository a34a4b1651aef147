"""Chat sessions: access facts, listing by scope, create, update, delete."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from chatsvc.errors import NotFound
from chatsvc.store.access import ListScope, SessionFacts
from chatsvc.store.messages import MESSAGE_COLUMNS, rows_as_dicts
from chatsvc.store.models import ChatMessage, ChatSession, SessionCollaborator, User, utcnow

SESSION_NOT_FOUND = "Chat session not found"
RECENT_MESSAGES = 5

SESSION_COLUMNS = (
    ChatSession.id,
    ChatSession.title,
    ChatSession.description,
    ChatSession.user_id,
    ChatSession.is_shared,
    ChatSession.chat_settings,
    ChatSession.created_at,
    ChatSession.updated_at,
    ChatSession.last_seq,
)


def _is_collaborator(user_id: uuid.UUID) -> Any:
    return exists().where(
        SessionCollaborator.session_id == ChatSession.id,
        SessionCollaborator.user_id == user_id,
    )


async def load_session(
    session: AsyncSession, session_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[dict[str, Any], SessionFacts]:
    """The session and the caller's access facts, in one query; :class:`NotFound` if absent."""
    row = (
        await session.execute(
            select(*SESSION_COLUMNS, _is_collaborator(user_id).label("is_collaborator")).where(
                ChatSession.id == session_id
            )
        )
    ).one_or_none()
    if row is None:
        raise NotFound(SESSION_NOT_FOUND)
    data = dict(row._mapping)
    is_collab = bool(data.pop("is_collaborator"))
    return data, SessionFacts(data["user_id"], data["is_shared"], is_collab)


def _scope_filter(scope: ListScope, user_id: uuid.UUID) -> Any:
    if scope is ListScope.ALL:
        return None
    own_or_shared = or_(ChatSession.user_id == user_id, ChatSession.is_shared)
    if scope is ListScope.OWN_OR_SHARED:
        return own_or_shared
    return or_(own_or_shared, _is_collaborator(user_id))


async def list_sessions(
    session: AsyncSession,
    scope: ListScope,
    user_id: uuid.UUID,
    limit: int,
    offset: int,
    include_messages: bool,
) -> list[tuple[dict[str, Any], SessionFacts]]:
    """The sessions in ``scope``, newest first, each with the caller's access facts."""
    query = select(*SESSION_COLUMNS, _is_collaborator(user_id).label("is_collaborator"))
    condition = _scope_filter(scope, user_id)
    if condition is not None:
        query = query.where(condition)
    query = (
        query.order_by(ChatSession.updated_at.desc(), ChatSession.id.desc())
        .limit(limit)
        .offset(offset)
    )
    sessions = rows_as_dicts(await session.execute(query))
    listed = [
        (item, SessionFacts(item["user_id"], item["is_shared"], bool(item.pop("is_collaborator"))))
        for item in sessions
    ]
    if include_messages:
        recent = await recent_messages(session, [s["id"] for s in sessions])
        for item in sessions:
            item["recent_messages"] = recent.get(item["id"], [])
    return listed


async def recent_messages(
    session: AsyncSession, session_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """The newest messages of each session, newest first, in one query whose
    cost follows the number of sessions, not of stored messages (a window
    function over all their messages grew with the history)."""
    if not session_ids:
        return {}
    if session.get_bind().dialect.name == "postgresql":
        # LATERAL: for each session, five steps down the (session, seq) index.
        inner = aliased(ChatMessage)
        newest = (
            select(inner.id)
            .where(inner.chat_session_id == ChatSession.id)
            .order_by(inner.seq.desc())
            .limit(RECENT_MESSAGES)
            .correlate(ChatSession)
            .lateral("newest")
        )
        query = (
            select(*MESSAGE_COLUMNS)
            .select_from(ChatSession)
            .join(newest, true())
            .join(ChatMessage, ChatMessage.id == newest.c.id)
        )
    else:
        # SQLite has no LATERAL: a correlated subquery finds each session's
        # fifth newest seq, and the join takes the messages at or above it
        # through the same index.
        fifth = aliased(ChatMessage)
        threshold = (
            select(fifth.seq)
            .where(fifth.chat_session_id == ChatSession.id)
            .order_by(fifth.seq.desc())
            .limit(1)
            .offset(RECENT_MESSAGES - 1)
            .correlate(ChatSession)
            .scalar_subquery()
        )
        query = (
            select(*MESSAGE_COLUMNS)
            .select_from(ChatSession)
            .join(
                ChatMessage,
                and_(
                    ChatMessage.chat_session_id == ChatSession.id,
                    ChatMessage.seq >= func.coalesce(threshold, 0),
                ),
            )
        )
    query = (
        query.join(User, User.id == ChatMessage.user_id)
        .where(ChatSession.id.in_(session_ids))
        .order_by(ChatMessage.chat_session_id, ChatMessage.seq.desc())
    )
    result: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for message in rows_as_dicts(await session.execute(query)):
        result.setdefault(message["chat_session_id"], []).append(message)
    return result


async def create_session(
    session: AsyncSession,
    owner_id: uuid.UUID,
    title: str,
    description: str,
    is_shared: bool,
    chat_settings: dict[str, Any],
) -> dict[str, Any]:
    now = utcnow()
    chat = ChatSession(
        user_id=owner_id,
        title=title,
        description=description,
        is_shared=is_shared,
        chat_settings=chat_settings,
        created_at=now,
        updated_at=now,
        last_seq=0,
    )
    session.add(chat)
    await session.commit()
    return {c.key: getattr(chat, c.key) for c in SESSION_COLUMNS}


async def update_session(
    session: AsyncSession, session_id: uuid.UUID, changes: dict[str, Any]
) -> dict[str, Any]:
    values = {**changes, "updated_at": utcnow()}
    row = (
        await session.execute(
            update(ChatSession)
            .where(ChatSession.id == session_id)
            .values(**values)
            .returning(*SESSION_COLUMNS)
        )
    ).one_or_none()
    if row is None:
        await session.rollback()
        raise NotFound(SESSION_NOT_FOUND)
    await session.commit()
    return dict(row._mapping)


async def delete_session(session: AsyncSession, session_id: uuid.UUID) -> None:
    # Foreign keys cascade to messages and collaborators (SQLite: PRAGMA foreign_keys=ON).
    result = await session.execute(delete(ChatSession).where(ChatSession.id == session_id))
    if result.rowcount == 0:  # type: ignore[attr-defined]
        await session.rollback()
        raise NotFound(SESSION_NOT_FOUND)
    await session.commit()


async def access_snapshot(
    session: AsyncSession, session_id: uuid.UUID
) -> tuple[uuid.UUID, bool, set[uuid.UUID]] | None:
    """Owner, sharing and collaborators of a session (None if it is gone)."""
    row = (
        await session.execute(
            select(ChatSession.user_id, ChatSession.is_shared).where(ChatSession.id == session_id)
        )
    ).one_or_none()
    if row is None:
        return None
    collaborators = set(
        (
            await session.execute(
                select(SessionCollaborator.user_id).where(
                    SessionCollaborator.session_id == session_id
                )
            )
        ).scalars()
    )
    return row.user_id, row.is_shared, collaborators
