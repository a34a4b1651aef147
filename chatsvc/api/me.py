"""``GET /api/me``: who the token says you are, your level and the permission mode."""

from __future__ import annotations

from typing import Any

from chatsvc.api.routing import Call
from chatsvc.keys import SETTINGS


async def me(call: Call[None, None]) -> dict[str, Any]:
    principal = call.principal
    return {
        "id": principal.user_id,
        "email": principal.email,
        "permission": principal.permission,
        "groups": list(principal.groups),
        "permission_mode": call.app[SETTINGS].permission_mode,
    }
