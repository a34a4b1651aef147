"""Users (created on first sight) and their persisted OAuth permission."""

from __future__ import annotations

import uuid

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chatsvc.store.models import OAuthPermission, User, new_id, utcnow


async def ensure_user(
    session: AsyncSession,
    issuer: str,
    subject: str,
    email: str,
    level: str | None,
    groups: list[str],
    _retry: bool = True,
) -> uuid.UUID:
    """Return the user's id, creating the user and updating email and permission when changed."""
    row = (
        await session.execute(
            select(User.id, User.email, OAuthPermission.level, OAuthPermission.groups)
            .outerjoin(OAuthPermission, OAuthPermission.user_id == User.id)
            .where(User.issuer == issuer, User.subject == subject)
        )
    ).one_or_none()
    if row is None:
        user_id = new_id()
        try:
            await session.execute(
                insert(User).values(
                    id=user_id, issuer=issuer, subject=subject, email=email, created_at=utcnow()
                )
            )
            await session.execute(
                insert(OAuthPermission).values(
                    user_id=user_id, level=level, groups=groups, updated_at=utcnow()
                )
            )
            await session.commit()
        except IntegrityError:
            # Two first requests of the same user raced; the other one created it.
            await session.rollback()
            if _retry:
                return await ensure_user(
                    session, issuer, subject, email, level, groups, _retry=False
                )
            raise
        return user_id
    user_id, known_email, known_level, known_groups = row
    changed = False
    if known_email != email:
        await session.execute(update(User).where(User.id == user_id).values(email=email))
        changed = True
    if known_groups is None:
        await session.execute(
            insert(OAuthPermission).values(
                user_id=user_id, level=level, groups=groups, updated_at=utcnow()
            )
        )
        changed = True
    elif known_level != level or list(known_groups) != groups:
        await session.execute(
            update(OAuthPermission)
            .where(OAuthPermission.user_id == user_id)
            .values(level=level, groups=groups, updated_at=utcnow())
        )
        changed = True
    if changed:
        await session.commit()
    return user_id


async def find_user_by_email(
    session: AsyncSession, email: str, prefer_issuer: str
) -> tuple[uuid.UUID, str] | None:
    rows = list(
        await session.execute(select(User.id, User.email, User.issuer).where(User.email == email))
    )
    if not rows:
        return None
    rows.sort(key=lambda r: r.issuer != prefer_issuer)
    return rows[0].id, rows[0].email
