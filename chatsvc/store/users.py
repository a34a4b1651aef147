"""Users (created on first sight) and their persisted OAuth permission."""

from __future__ import annotations

import uuid
from typing import cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chatsvc.store.models import OAuthPermission, User, new_id, utcnow

# The tables themselves, for Core inserts on a hot path.
USERS = cast(Table, User.__table__)
PERMISSIONS = cast(Table, OAuthPermission.__table__)


async def ensure_user(
    session: AsyncSession,
    issuer: str,
    subject: str,
    email: str | None,
    level: str | None,
    groups: list[str],
    idp_user_id: str | None = None,
    _retry: bool = True,
) -> tuple[uuid.UUID, str]:
    """The user's id and email label, creating the user on first sight and updating
    email, IdP user id and permission when changed. The user is (``issuer``,
    ``subject``) and nothing else; ``email`` None keeps the known label (a new
    user is labelled with ``subject``)."""
    row = (
        await session.execute(
            select(
                User.id,
                User.email,
                User.idp_user_id,
                OAuthPermission.level,
                OAuthPermission.groups,
            )
            .outerjoin(OAuthPermission, OAuthPermission.user_id == User.id)
            .where(User.issuer == issuer, User.subject == subject)
        )
    ).one_or_none()
    if row is None:
        user_id = new_id()
        label = email or subject
        try:
            # Core inserts on the tables: the ORM's bulk-insert path costs a first
            # request about a third of a new user's sign-in (py-spy, 1,000 new users).
            await session.execute(
                insert(USERS).values(
                    id=user_id,
                    issuer=issuer,
                    subject=subject,
                    email=label,
                    idp_user_id=idp_user_id or subject,
                    created_at=utcnow(),
                )
            )
            await session.execute(
                insert(PERMISSIONS).values(
                    user_id=user_id, level=level, groups=groups, updated_at=utcnow()
                )
            )
            await session.commit()
        except IntegrityError:
            # Two first requests of the same user raced; the other one created it.
            await session.rollback()
            if _retry:
                return await ensure_user(
                    session, issuer, subject, email, level, groups, idp_user_id, _retry=False
                )
            raise
        return user_id, label
    user_id, known_email, known_idp_id, known_level, known_groups = row
    changed = False
    values: dict[str, str] = {}
    if email and known_email != email:
        values["email"] = email
    if idp_user_id and known_idp_id != idp_user_id:
        values["idp_user_id"] = idp_user_id
    elif known_idp_id is None:
        values["idp_user_id"] = subject
    if values:
        await session.execute(update(User).where(User.id == user_id).values(**values))
        changed = True
    if known_groups is None:
        await session.execute(
            insert(PERMISSIONS).values(
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
    return user_id, email or known_email


async def find_user(session: AsyncSession, user_id: uuid.UUID) -> tuple[uuid.UUID, str] | None:
    row = (
        await session.execute(select(User.id, User.email).where(User.id == user_id))
    ).one_or_none()
    return None if row is None else (row.id, row.email)


async def find_users_by_email(
    session: AsyncSession, email: str, limit: int = 2
) -> list[tuple[uuid.UUID, str]]:
    """Users labelled with ``email`` (case-insensitively), at most ``limit``: an
    email is only a label, so a caller may act on it only when exactly one matches."""
    rows = await session.execute(
        select(User.id, User.email)
        .where(func.lower(User.email) == email.lower())
        .order_by(User.id)
        .limit(limit)
    )
    return [(row.id, row.email) for row in rows]


async def search_users(
    session: AsyncSession, prefix: str, limit: int
) -> list[dict[str, uuid.UUID | str]]:
    """Up to ``limit`` users whose email starts with ``prefix`` (case-insensitively,
    ``%`` and ``_`` taken literally: SQLAlchemy's ``autoescape``), by email.

    Only the email is searched: the subject and the IdP's user id are opaque
    identifiers that a prefix search would let anyone probe."""
    rows = await session.execute(
        select(User.id.label("user_id"), User.email)
        .where(User.email.istartswith(prefix, autoescape=True))
        .order_by(func.lower(User.email), User.email, User.id)
        .limit(limit)
    )
    return [dict(row._mapping) for row in rows]
