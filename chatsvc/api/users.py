"""The user directory (declared in :mod:`chatsvc.api.routes`)."""

from __future__ import annotations

from typing import Any

from chatsvc.api.query import UserQuery
from chatsvc.api.routing import Call
from chatsvc.service import users


async def list_users(call: Call[UserQuery, None]) -> list[dict[str, Any]]:
    return await users.search_users(call.app, call.query.query, call.query.limit)
