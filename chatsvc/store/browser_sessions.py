"""Server-side browser sessions (``browser_sessions``): the rows behind the
opaque session cookie. Values arrive here already encrypted; this module only
stores them.

Token refreshes are coordinated across processes through ``version`` (a
compare-and-swap counter) and ``refresh_until`` (the lease of the process that
is talking to the IdP right now): :func:`claim_refresh` wins at most once per
version, and everyone else re-reads the row."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from chatsvc.store.models import BrowserSession


@dataclass(frozen=True, slots=True)
class StoredSession:
    id: str
    user_id: uuid.UUID | None
    state: str
    tokens: str | None
    expires_at: datetime
    sid: str | None
    version: int
    refresh_until: datetime | None
    created_at: datetime


COLUMNS = (
    BrowserSession.id,
    BrowserSession.user_id,
    BrowserSession.state,
    BrowserSession.tokens,
    BrowserSession.expires_at,
    BrowserSession.sid,
    BrowserSession.version,
    BrowserSession.refresh_until,
    BrowserSession.created_at,
)


async def load(db: AsyncSession, session_id: str, now: datetime) -> StoredSession | None:
    row = (
        await db.execute(
            select(*COLUMNS).where(BrowserSession.id == session_id, BrowserSession.expires_at > now)
        )
    ).one_or_none()
    await db.rollback()  # end the read transaction; nothing is held across the request
    return None if row is None else StoredSession(*row)


async def create(
    db: AsyncSession,
    session_id: str,
    state: str,
    expires_at: datetime,
    now: datetime,
    *,
    user_id: uuid.UUID | None = None,
    tokens: str | None = None,
    sid: str | None = None,
) -> None:
    # Expired rows go as new ones arrive: no sweeper process needed.
    await db.execute(delete(BrowserSession).where(BrowserSession.expires_at <= now))
    await db.execute(
        insert(BrowserSession).values(
            id=session_id,
            user_id=user_id,
            state=state,
            tokens=tokens,
            expires_at=expires_at,
            sid=sid,
            version=0,
            refresh_until=None,
            created_at=now,
            updated_at=now,
        )
    )
    await db.commit()


async def update_state(db: AsyncSession, session_id: str, state: str, now: datetime) -> bool:
    """Store the session's state (CSRF token, sign-in in progress); False if the row is gone."""
    result = await db.execute(
        update(BrowserSession)
        .where(BrowserSession.id == session_id, BrowserSession.expires_at > now)
        .values(state=state, updated_at=now)
    )
    await db.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def remove(db: AsyncSession, session_id: str) -> bool:
    result = await db.execute(delete(BrowserSession).where(BrowserSession.id == session_id))
    await db.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def claim_refresh(
    db: AsyncSession, session_id: str, version: int, now: datetime, lease_until: datetime
) -> bool:
    """Compare-and-swap: take the refresh of ``version`` unless someone else holds it."""
    result = await db.execute(
        update(BrowserSession)
        .where(
            BrowserSession.id == session_id,
            BrowserSession.version == version,
            or_(BrowserSession.refresh_until.is_(None), BrowserSession.refresh_until <= now),
        )
        .values(version=version + 1, refresh_until=lease_until, updated_at=now)
    )
    await db.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def finish_refresh(
    db: AsyncSession,
    session_id: str,
    claimed_version: int,
    tokens: str,
    expires_at: datetime,
    now: datetime,
) -> bool:
    """Store the refreshed tokens and release the lease; False if the row changed or went."""
    result = await db.execute(
        update(BrowserSession)
        .where(BrowserSession.id == session_id, BrowserSession.version == claimed_version)
        .values(
            version=claimed_version + 1,
            tokens=tokens,
            expires_at=expires_at,
            refresh_until=None,
            updated_at=now,
        )
    )
    await db.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]
