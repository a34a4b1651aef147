"""Stored audit events."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from chatsvc.store.models import AuditEvent


async def insert_events(session: AsyncSession, events: list[dict[str, Any]]) -> None:
    await session.execute(insert(AuditEvent), events)
    await session.commit()


async def list_events(
    session: AsyncSession,
    limit: int,
    offset: int,
    user_id: uuid.UUID | None = None,
    action: str | None = None,
) -> list[dict[str, Any]]:
    query = select(*AuditEvent.__table__.columns)
    if user_id is not None:
        query = query.where(AuditEvent.user_id == user_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    query = (
        query.order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [dict(row._mapping) for row in await session.execute(query)]
