"""The user directory: the users chatsvc has seen, looked up by the start of
their email, so that an owner can pick a collaborator instead of typing an id."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from chatsvc.keys import DB_SESSIONS
from chatsvc.store import users


async def search_users(app: web.Application, prefix: str, limit: int) -> list[dict[str, Any]]:
    """``{user_id, email}`` of up to ``limit`` users whose email starts with
    ``prefix``, by email. The route's level (``user.list``) is the whole rule:
    who may own a session may look up whom to add to it. Nothing else about a
    user (subject, IdP id, level, groups) is answered."""
    async with app[DB_SESSIONS]() as db:
        return await users.search_users(db, prefix, limit)
