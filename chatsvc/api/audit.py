"""The audit trail, for admins (declared in :mod:`chatsvc.api.routes`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from chatsvc.api.query import AuditQuery
from chatsvc.api.routing import Call
from chatsvc.keys import AUDIT, DB_SESSIONS
from chatsvc.store import audit


async def list_audit_events(call: Call[AuditQuery, None]) -> list[dict[str, Any]]:
    query = call.query
    await call.app[AUDIT].flush()  # an admin reads the denials made up to now
    async with call.app[DB_SESSIONS]() as db:
        return await audit.list_events(
            db, query.limit, query.offset, query.user_id, query.action, query.outcome
        )


async def verify_audit_trail(call: Call[None, None]) -> dict[str, Any]:
    await call.app[AUDIT].flush()  # the events recorded up to now are checked too
    return asdict(await audit.verify_chain(call.app[DB_SESSIONS]))
