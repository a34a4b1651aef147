"""The audit trail, for admins."""

from __future__ import annotations

from aiohttp import web

from chatsvc.api.guard import requires
from chatsvc.api.params import int_param, str_param, uuid_param
from chatsvc.api.responses import json_response
from chatsvc.keys import AUDIT, DB_SESSIONS
from chatsvc.policy import Action
from chatsvc.store import audit


@requires(Action.AUDIT_READ)
async def list_audit_events(request: web.Request) -> web.Response:
    limit = int_param(request, "limit", 100, 1, 500)
    offset = int_param(request, "offset", 0, 0)
    user_id = uuid_param(request, "user_id")
    action = str_param(request, "action")
    await request.app[AUDIT].flush()  # an admin reads the denials made up to now
    async with request.app[DB_SESSIONS]() as db:
        items = await audit.list_events(db, limit, offset, user_id, action)
    return json_response(items)


def setup(app: web.Application) -> None:
    app.router.add_get("/api/chat/audit", list_audit_events)
