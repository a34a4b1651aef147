"""``GET /api/me``: who the token says you are, and your level."""

from __future__ import annotations

from aiohttp import web

from chatsvc.api.guard import principal_of
from chatsvc.api.responses import json_response


async def me(request: web.Request) -> web.Response:
    principal = principal_of(request)
    return json_response(
        {
            "id": principal.user_id,
            "email": principal.email,
            "permission": principal.permission,
            "groups": list(principal.groups),
        }
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/api/me", me)
