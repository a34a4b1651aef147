"""Stored revocations, the users an IdP names, and the logout token ids seen."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import ColumnElement, Table, delete, insert, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chatsvc.store import users
from chatsvc.store.models import BrowserSession, Revocation, SeenTokenId, User

REVOCATIONS = cast(Table, Revocation.__table__)


@dataclass(frozen=True, slots=True)
class NamedUser:
    id: uuid.UUID
    email: str


@dataclass(frozen=True, slots=True)
class StoredRevocation:
    user_id: uuid.UUID
    cutoff: datetime
    expires_at: datetime


async def users_by_email(db: AsyncSession, email: str) -> list[NamedUser]:
    """Every user with that email, whatever the case: ending access too broadly is safe."""
    found = await users.find_users_by_email(db, email.strip(), limit=10_000)
    return [NamedUser(*row) for row in found]


async def users_by_subject(db: AsyncSession, issuers: tuple[str, ...], sub: str) -> list[NamedUser]:
    """The users of these issuers whose ``sub`` or IdP user id is ``sub``."""
    rows = await db.execute(
        select(User.id, User.email).where(
            or_(
                User.idp_user_id == sub,
                (User.subject == sub) & User.issuer.in_(issuers),
            )
        )
    )
    return [NamedUser(*row) for row in rows]


async def add(
    db: AsyncSession,
    user_ids: list[uuid.UUID],
    cutoff: datetime,
    expires_at: datetime,
    reason: str,
    now: datetime,
) -> list[uuid.UUID]:
    """One record per user and cut-off, in the caller's transaction: the users for
    whom this cut-off is new (a notice delivered twice, even to two processes at
    once, records and reports it once)."""
    if not user_ids:
        return []
    rows = [
        {
            "id": uuid.uuid4(),
            "user_id": user_id,
            "cutoff": cutoff,
            "expires_at": expires_at,
            "reason": reason,
            "created_at": now,
        }
        for user_id in dict.fromkeys(user_ids)
    ]
    dialect = db.get_bind().dialect.name
    upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        upsert(REVOCATIONS)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["user_id", "cutoff"])
        .returning(REVOCATIONS.c.user_id)
    )
    return list((await db.execute(statement)).scalars())


async def in_force(db: AsyncSession, now: datetime) -> list[StoredRevocation]:
    rows = await db.execute(
        select(Revocation.user_id, Revocation.cutoff, Revocation.expires_at).where(
            Revocation.expires_at > now
        )
    )
    result = [StoredRevocation(*row) for row in rows]
    await db.rollback()
    return result


async def purge(db: AsyncSession, now: datetime) -> int:
    revocations = await db.execute(delete(Revocation).where(Revocation.expires_at <= now))
    await db.execute(delete(SeenTokenId).where(SeenTokenId.expires_at <= now))
    await db.commit()
    return int(revocations.rowcount)  # type: ignore[attr-defined]


async def forget_use(db: AsyncSession, token_id: str) -> None:
    """Give a token id back: what it was sent for could not be carried out, and the
    identity provider will retry with the same token."""
    await db.execute(delete(SeenTokenId).where(SeenTokenId.id == token_id))
    await db.commit()


async def first_use(db: AsyncSession, token_id: str, expires_at: datetime) -> bool:
    """Record a token id; False when it was seen before (a replay)."""
    try:
        await db.execute(insert(SeenTokenId).values(id=token_id, expires_at=expires_at))
        await db.commit()
    except IntegrityError:
        await db.rollback()
        return False
    return True


@dataclass(frozen=True, slots=True)
class EndedSession:
    id: str
    tokens: str | None  # encrypted, as stored


async def end_browser_sessions(
    db: AsyncSession,
    *,
    user_ids: list[uuid.UUID] | None = None,
    sid: str | None = None,
    commit: bool = True,
) -> list[EndedSession]:
    """Delete the browser sessions of these users, or with this IdP session id
    (``sid`` and ``user_ids`` together: that sid of those users), and return them."""
    conditions: list[ColumnElement[bool]] = []
    if user_ids is not None:
        conditions.append(BrowserSession.user_id.in_(user_ids))
    if sid is not None:
        conditions.append(BrowserSession.sid == sid)
    if not conditions:
        return []
    rows = (
        await db.execute(
            delete(BrowserSession)
            .where(*conditions)
            .returning(BrowserSession.id, BrowserSession.tokens)
        )
    ).all()
    if commit:
        await db.commit()
    return [EndedSession(*row) for row in rows]
