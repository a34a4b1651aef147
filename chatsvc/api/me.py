"""``GET /api/me``: who the token says you are, and your level."""

from __future__ import annotations

from typing import Any

from chatsvc.api.routing import Call


async def me(call: Call[None, None]) -> dict[str, Any]:
    principal = call.principal
    return {
        "id": principal.user_id,
        "email": principal.email,
        "permission": principal.permission,
        "groups": list(principal.groups),
    }
