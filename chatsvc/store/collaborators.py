"""Session collaborators."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chatsvc.errors import NotFound
from chatsvc.store.models import SessionCollaborator, User, utcnow

COLLABORATOR_NOT_FOUND = "Collaborator not found"


async def list_collaborators(session: AsyncSession, session_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(SessionCollaborator.user_id, User.email, SessionCollaborator.added_at)
        .join(User, User.id == SessionCollaborator.user_id)
        .where(SessionCollaborator.session_id == session_id)
        .order_by(SessionCollaborator.added_at, SessionCollaborator.user_id)
    )
    return [dict(row._mapping) for row in rows]


async def add_collaborator(
    session: AsyncSession, session_id: uuid.UUID, user_id: uuid.UUID, email: str
) -> tuple[dict[str, Any], bool]:
    """Add the user; return the entry and whether it is new."""
    existing = (
        await session.execute(
            select(SessionCollaborator.added_at).where(
                SessionCollaborator.session_id == session_id,
                SessionCollaborator.user_id == user_id,
            )
        )
    ).scalar_one_or_none()
    if existing is not None:
        await session.rollback()
        return {"user_id": user_id, "email": email, "added_at": existing}, False
    added_at = utcnow()
    session.add(SessionCollaborator(session_id=session_id, user_id=user_id, added_at=added_at))
    try:
        await session.commit()
    except IntegrityError:
        # Either the same user was added concurrently, or the session was just deleted.
        await session.rollback()
        again = (
            await session.execute(
                select(SessionCollaborator.added_at).where(
                    SessionCollaborator.session_id == session_id,
                    SessionCollaborator.user_id == user_id,
                )
            )
        ).scalar_one_or_none()
        await session.rollback()
        if again is None:
            raise NotFound("Chat session not found") from None
        return {"user_id": user_id, "email": email, "added_at": again}, False
    return {"user_id": user_id, "email": email, "added_at": added_at}, True


async def remove_collaborator(
    session: AsyncSession, session_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    result = await session.execute(
        delete(SessionCollaborator).where(
            SessionCollaborator.session_id == session_id,
            SessionCollaborator.user_id == user_id,
        )
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        await session.rollback()
        raise NotFound(COLLABORATOR_NOT_FOUND)
    await session.commit()
