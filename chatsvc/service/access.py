"""Load what a decision needs and apply the policy: the opening of every use case
on an existing session or message."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from chatsvc.auth.principal import Principal
from chatsvc.policy import Action, SessionFacts, check
from chatsvc.store import messages, sessions


async def authorized_session(
    db: AsyncSession, principal: Principal, session_id: uuid.UUID, *actions: Action
) -> tuple[dict[str, Any], SessionFacts]:
    """The session and the caller's facts; :class:`NotFound` or :class:`AccessDenied`."""
    session, facts = await sessions.load_session(db, session_id, principal.user_id)
    for action in actions:
        check(principal, action, facts)
    return session, facts


async def authorized_message(
    db: AsyncSession, principal: Principal, message_id: uuid.UUID, action: Action
) -> dict[str, Any]:
    message, facts = await messages.load_message(db, message_id, principal.user_id)
    check(principal, action, facts)
    return message
