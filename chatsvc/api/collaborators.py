"""Handlers for session collaborators (declared in :mod:`chatsvc.api.routes`)."""

from __future__ import annotations

from typing import Any

from chatsvc.api.routing import Call, Reply
from chatsvc.service import collaborators
from chatsvc.service.inputs import CollaboratorAdd


async def list_collaborators(call: Call[None, None]) -> list[dict[str, Any]]:
    return await collaborators.list_collaborators(call.app, call.principal, call.id("session_id"))


async def add_collaborator(call: Call[None, CollaboratorAdd]) -> Reply:
    entry, created = await collaborators.add_collaborator(
        call.app, call.principal, call.id("session_id"), call.body
    )
    return Reply(entry, 201 if created else 200)


async def remove_collaborator(call: Call[None, None]) -> None:
    # A malformed user id is None here: not found, once the session's checks have passed.
    await collaborators.remove_collaborator(
        call.app, call.principal, call.id("session_id"), call.ids["user_id"]
    )
