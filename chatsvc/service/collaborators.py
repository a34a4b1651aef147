"""Session collaborators: list, add (by user id, or by an email only one user has), remove."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from chatsvc.auth.principal import Principal
from chatsvc.errors import Conflict, FieldError, NotFound, ValidationFailed
from chatsvc.events import CollaboratorChanged
from chatsvc.keys import BROKER, DB_SESSIONS
from chatsvc.policy import Action
from chatsvc.service.access import authorized_session
from chatsvc.service.inputs import CollaboratorAdd
from chatsvc.store import collaborators, users


async def list_collaborators(
    app: web.Application, principal: Principal, session_id: uuid.UUID
) -> list[dict[str, Any]]:
    async with app[DB_SESSIONS]() as db:
        await authorized_session(db, principal, session_id, Action.COLLABORATOR_LIST)
        return await collaborators.list_collaborators(db, session_id)


async def add_collaborator(
    app: web.Application, principal: Principal, session_id: uuid.UUID, body: CollaboratorAdd
) -> tuple[dict[str, Any], bool]:
    """By ``user_id``; by ``email`` only when exactly one user has it (an email is a
    label, never an identity: anyone can sign in somewhere with someone else's)."""
    if body.user_id is None and body.email is None:
        raise ValidationFailed(
            "email: a user_id or an email is required",
            [FieldError("email", "a user_id or an email is required")],
        )
    if body.user_id is not None and body.email is not None:
        raise ValidationFailed(
            "user_id: give either user_id or email, not both",
            [FieldError("user_id", "give either user_id or email, not both")],
        )
    async with app[DB_SESSIONS]() as db:
        session, _ = await authorized_session(db, principal, session_id, Action.COLLABORATOR_ADD)
        field = "user_id" if body.user_id is not None else "email"
        if body.user_id is not None:
            found = await users.find_user(db, uuid.UUID(body.user_id))
        else:
            assert body.email is not None
            matches = await users.find_users_by_email(db, body.email.strip())
            if len(matches) > 1:
                raise Conflict("Several users have this email; add by user_id")
            found = matches[0] if matches else None
        if found is None:
            raise NotFound("User not found")
        user_id, email = found
        if user_id == session["user_id"]:
            raise ValidationFailed(
                "The owner cannot be a collaborator",
                [FieldError(field, "is the session's owner")],
            )
        entry, created = await collaborators.add_collaborator(db, session_id, user_id, email)
    if created:
        app[BROKER].publish(CollaboratorChanged(session_id, user_id, added=True))
    return entry, created


async def remove_collaborator(
    app: web.Application, principal: Principal, session_id: uuid.UUID, user_id: uuid.UUID | None
) -> None:
    """``user_id`` None: a malformed id in the path, not found once the session is."""
    async with app[DB_SESSIONS]() as db:
        await authorized_session(db, principal, session_id, Action.COLLABORATOR_REMOVE)
        if user_id is None:
            raise NotFound(collaborators.COLLABORATOR_NOT_FOUND)
        await collaborators.remove_collaborator(db, session_id, user_id)
    app[BROKER].publish(CollaboratorChanged(session_id, user_id, added=False))
