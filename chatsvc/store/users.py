"""Users (created on first sight) and their persisted OAuth permission."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chatsvc.store.models import OAuthPermission, User, new_id, utcnow

# The tables themselves, for Core inserts on a hot path.
USERS = cast(Table, User.__table__)
PERMISSIONS = cast(Table, OAuthPermission.__table__)


@dataclass(frozen=True, slots=True)
class Sighting:
    """What one authenticated token says about its user."""

    issuer: str
    subject: str
    email: str | None
    level: str | None
    groups: list[str]
    idp_user_id: str | None = None


async def ensure_user(
    session: AsyncSession,
    issuer: str,
    subject: str,
    email: str | None,
    level: str | None,
    groups: list[str],
    idp_user_id: str | None = None,
) -> tuple[uuid.UUID, str]:
    """The user's id and email label, creating the user on first sight and updating
    email, IdP user id and permission when changed. The user is (``issuer``,
    ``subject``) and nothing else; ``email`` None keeps the known label (a new
    user is labelled with ``subject``)."""
    sighting = Sighting(issuer, subject, email, level, groups, idp_user_id)
    return (await ensure_users(session, [sighting]))[sighting.issuer, sighting.subject]


async def ensure_users(
    session: AsyncSession, sightings: list[Sighting], _retry: bool = True
) -> dict[tuple[str, str], tuple[uuid.UUID, str]]:
    """:func:`ensure_user` for several users in one transaction: one query finds
    the known ones, new ones are inserted together (the first requests of many
    new users at once cost one commit, not one each). Keyed by (issuer, subject);
    a user sighted twice takes the last sighting."""
    latest = {(s.issuer, s.subject): s for s in sightings}
    rows = await session.execute(
        select(
            User.issuer,
            User.subject,
            User.id,
            User.email,
            User.idp_user_id,
            OAuthPermission.level,
            OAuthPermission.groups,
        )
        .outerjoin(OAuthPermission, OAuthPermission.user_id == User.id)
        .where(tuple_(User.issuer, User.subject).in_(list(latest)))
    )
    known = {(row[0], row[1]): row[2:] for row in rows}
    results: dict[tuple[str, str], tuple[uuid.UUID, str]] = {}
    new_users: list[dict[str, Any]] = []
    new_permissions: list[dict[str, Any]] = []
    changed = False
    now = utcnow()
    for key, seen in latest.items():
        row = known.get(key)
        if row is None:
            user_id, label = new_id(), seen.email or seen.subject
            new_users.append(
                {
                    "id": user_id,
                    "issuer": seen.issuer,
                    "subject": seen.subject,
                    "email": label,
                    "idp_user_id": seen.idp_user_id or seen.subject,
                    "created_at": now,
                }
            )
            new_permissions.append(
                {"user_id": user_id, "level": seen.level, "groups": seen.groups, "updated_at": now}
            )
            results[key] = (user_id, label)
            continue
        changed = await _update_known(session, seen, *row) or changed
        results[key] = (row[0], seen.email or row[1])
    try:
        if new_users:
            # Core inserts on the tables: the ORM's bulk-insert path costs a first
            # request about a third of a new user's sign-in (py-spy, 1,000 new users).
            await session.execute(insert(USERS), new_users)
            await session.execute(insert(PERMISSIONS), new_permissions)
        if new_users or changed:
            await session.commit()
    except IntegrityError:
        # First requests of the same user raced (another process created it).
        await session.rollback()
        if _retry:
            return await ensure_users(session, sightings, _retry=False)
        raise
    return results


async def _update_known(
    session: AsyncSession,
    seen: Sighting,
    user_id: uuid.UUID,
    known_email: str,
    known_idp_id: str | None,
    known_level: str | None,
    known_groups: list[str] | None,
) -> bool:
    """Bring a known user's row up to what their token says; True when it changed."""
    changed = False
    values: dict[str, str] = {}
    if seen.email and known_email != seen.email:
        values["email"] = seen.email
    if seen.idp_user_id and known_idp_id != seen.idp_user_id:
        values["idp_user_id"] = seen.idp_user_id
    elif known_idp_id is None:
        values["idp_user_id"] = seen.subject
    if values:
        await session.execute(update(User).where(User.id == user_id).values(**values))
        changed = True
    if known_groups is None:
        await session.execute(
            insert(PERMISSIONS).values(
                user_id=user_id, level=seen.level, groups=seen.groups, updated_at=utcnow()
            )
        )
        changed = True
    elif known_level != seen.level or list(known_groups) != seen.groups:
        await session.execute(
            update(OAuthPermission)
            .where(OAuthPermission.user_id == user_id)
            .values(level=seen.level, groups=seen.groups, updated_at=utcnow())
        )
        changed = True
    return changed


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
