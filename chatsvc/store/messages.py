"""Chat messages: paging by seq, gapless numbering, idempotent send, edit, delete."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chatsvc.errors import NotFound
from chatsvc.store.access import SessionFacts
from chatsvc.store.models import ChatMessage, ChatSession, SessionCollaborator, User, utcnow

MESSAGE_NOT_FOUND = "Chat message not found"

MESSAGE_COLUMNS = (
    ChatMessage.id,
    ChatMessage.chat_session_id,
    ChatMessage.seq,
    ChatMessage.user_id,
    User.email.label("user_email"),
    ChatMessage.content,
    ChatMessage.message_type,
    ChatMessage.meta.label("metadata"),
    ChatMessage.client_msg_id,
    ChatMessage.is_edited,
    ChatMessage.created_at,
    ChatMessage.updated_at,
)


def message_dict(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


def rows_as_dicts(result: Any) -> list[dict[str, Any]]:
    """All rows of a result as dicts; zipping one key list is the cheap way
    (building a mapping view per row showed in the list profile)."""
    keys = tuple(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result]


def _select_messages() -> Any:
    return select(*MESSAGE_COLUMNS).join(User, User.id == ChatMessage.user_id)


async def list_messages(
    session: AsyncSession,
    session_id: uuid.UUID,
    limit: int | None,
    offset: int = 0,
    after_seq: int | None = None,
    before_seq: int | None = None,
) -> list[dict[str, Any]]:
    """Oldest first. ``before_seq`` alone pages backwards (the ``limit`` just before it)."""
    query = _select_messages().where(ChatMessage.chat_session_id == session_id)
    if after_seq is not None:
        query = query.where(ChatMessage.seq > after_seq)
    if before_seq is not None:
        query = query.where(ChatMessage.seq < before_seq)
    backwards = before_seq is not None and after_seq is None
    order = ChatMessage.seq.desc() if backwards else ChatMessage.seq.asc()
    messages = rows_as_dicts(
        await session.execute(query.order_by(order).limit(limit).offset(offset))
    )
    if backwards:
        messages.reverse()
    return messages


async def find_by_client_id(
    session: AsyncSession, session_id: uuid.UUID, user_id: uuid.UUID, client_msg_id: str
) -> dict[str, Any] | None:
    row = (
        await session.execute(
            _select_messages().where(
                ChatMessage.chat_session_id == session_id,
                ChatMessage.user_id == user_id,
                ChatMessage.client_msg_id == client_msg_id,
            )
        )
    ).one_or_none()
    return message_dict(row) if row is not None else None


async def send_message(
    session: AsyncSession,
    session_id: uuid.UUID,
    author_id: uuid.UUID,
    author_email: str,
    content: str,
    message_type: str,
    metadata: dict[str, Any],
    client_msg_id: str | None,
    admit: Callable[[], None] | None = None,
) -> tuple[dict[str, Any], bool]:
    """Store a message; return it and whether it is new.

    ``admit`` runs once the message is known not to be a retry, before anything
    is written (the rate limit: a retry costs no budget); it may raise.

    The seq comes from the session row, bumped in the same transaction as the
    insert: the row lock (PostgreSQL) or the single writer (SQLite) numbers
    concurrent senders 1, 2, 3... in commit order, and a rolled-back send gives
    its number back. A repeated ``client_msg_id`` returns the first message.
    """
    if client_msg_id is not None:
        existing = await find_by_client_id(session, session_id, author_id, client_msg_id)
        if existing is not None:
            await session.rollback()
            return existing, False
    if admit is not None:
        admit()
    now = utcnow()
    seq = (
        await session.execute(
            update(ChatSession)
            .where(ChatSession.id == session_id)
            .values(last_seq=ChatSession.last_seq + 1, updated_at=now)
            .returning(ChatSession.last_seq)
        )
    ).scalar_one_or_none()
    if seq is None:
        await session.rollback()
        raise NotFound("Chat session not found")
    if client_msg_id is not None:
        # A concurrent send with the same id may have committed while we waited for the lock.
        existing = await find_by_client_id(session, session_id, author_id, client_msg_id)
        if existing is not None:
            await session.rollback()
            return existing, False
    message = ChatMessage(
        chat_session_id=session_id,
        seq=seq,
        user_id=author_id,
        content=content,
        message_type=message_type,
        meta=metadata,
        client_msg_id=client_msg_id,
        is_edited=False,
        created_at=now,
        updated_at=now,
    )
    session.add(message)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        if client_msg_id is None:
            raise
        existing = await find_by_client_id(session, session_id, author_id, client_msg_id)
        if existing is None:
            raise
        await session.rollback()
        return existing, False
    return {
        "id": message.id,
        "chat_session_id": session_id,
        "seq": seq,
        "user_id": author_id,
        "user_email": author_email,
        "content": content,
        "message_type": message_type,
        "metadata": metadata,
        "client_msg_id": client_msg_id,
        "is_edited": False,
        "created_at": now,
        "updated_at": now,
    }, True


async def load_message(
    session: AsyncSession, message_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[dict[str, Any], SessionFacts]:
    """The message with the access facts of its session (one query)."""
    is_collab = (
        select(SessionCollaborator.user_id)
        .where(
            SessionCollaborator.session_id == ChatMessage.chat_session_id,
            SessionCollaborator.user_id == user_id,
        )
        .exists()
    )
    row = (
        await session.execute(
            _select_messages()
            .add_columns(
                ChatSession.user_id.label("owner_id"),
                ChatSession.is_shared,
                is_collab.label("is_collaborator"),
            )
            .join(ChatSession, ChatSession.id == ChatMessage.chat_session_id)
            .where(ChatMessage.id == message_id)
        )
    ).one_or_none()
    if row is None:
        raise NotFound(MESSAGE_NOT_FOUND)
    data = dict(row._mapping)
    facts = SessionFacts(
        owner_id=data.pop("owner_id"),
        is_shared=data.pop("is_shared"),
        is_collaborator=bool(data.pop("is_collaborator")),
        author_id=data["user_id"],
    )
    return data, facts


async def update_message(
    session: AsyncSession, message: dict[str, Any], changes: dict[str, Any]
) -> dict[str, Any]:
    values: dict[str, Any] = {"is_edited": True, "updated_at": utcnow()}
    if "content" in changes:
        values["content"] = changes["content"]
    if "metadata" in changes:
        values["meta"] = changes["metadata"]
    result = await session.execute(
        update(ChatMessage).where(ChatMessage.id == message["id"]).values(**values)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        await session.rollback()
        raise NotFound(MESSAGE_NOT_FOUND)
    await session.commit()
    updated = {**message, **values, "metadata": values.get("meta", message["metadata"])}
    updated.pop("meta", None)
    return updated


async def delete_message(session: AsyncSession, message_id: uuid.UUID) -> None:
    result = await session.execute(delete(ChatMessage).where(ChatMessage.id == message_id))
    if result.rowcount == 0:  # type: ignore[attr-defined]
        await session.rollback()
        raise NotFound(MESSAGE_NOT_FOUND)
    await session.commit()
