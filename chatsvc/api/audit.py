"""The audit trail, for admins."""

from __future__ import annotations

from aiohttp import web

from chatsvc.api.guard import requires
from chatsvc.api.query import AuditQuery, parse_query
from chatsvc.api.responses import json_response
from chatsvc.keys import AUDIT, DB_SESSIONS
from chatsvc.policy import Action
from chatsvc.store import audit


@requires(Action.AUDIT_READ)
async def list_audit_events(request: web.Request) -> web.Response:
    query = parse_query(AuditQuery, request.query)
    await request.app[AUDIT].flush()  # an admin reads the denials made up to now
    async with request.app[DB_SESSIONS]() as db:
        items = await audit.list_events(db, query.limit, query.offset, query.user_id, query.action)
    return json_response(items)


def setup(app: web.Application) -> None:
    app.router.add_get("/api/chat/audit", list_audit_events)
