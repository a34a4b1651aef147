"""Shadow mode (``CHATSVC_PERMISSION_MODE=shadow``) for every HTTP request.

The middleware, mounted only in shadow mode, right after the authentication
middleware, makes each request's principal act as it does in this mode
(:meth:`GroupMapping.acting`) and audits the one refusal enforcement would have
given as ``would_deny``. A request that is denied anyway (403) is a denial, and
:mod:`chatsvc.http.problems` audits it as one: never both for one request.
WebSocket checks open their own scopes (:mod:`chatsvc.realtime.ws`).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from chatsvc.audit import AuditWriter
from chatsvc.errors import AccessDenied
from chatsvc.http.forwarded import client_ip
from chatsvc.keys import AUDIT, AUTHENTICATOR, PRINCIPAL, REQUEST_ID, RESOURCE_ID
from chatsvc.policy import WouldDeny, shadow_scope


def record_would_deny(
    audit: AuditWriter,
    would: WouldDeny,
    *,
    resource_id: str | None,
    request_id: str | None,
    client_ip: str | None,
    reason: str | None = None,
) -> None:
    """One ``would_deny`` event: the caller at the level enforcement judged, its reason."""
    audit.deny(
        would.principal,
        would.action,
        would.reason if reason is None else reason,
        resource_id=resource_id,
        request_id=request_id,
        client_ip=client_ip,
        outcome="would_deny",
    )


@web.middleware
async def shadow_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    principal = request.get(PRINCIPAL)
    if principal is not None:
        request[PRINCIPAL] = request.app[AUTHENTICATOR].mapping.acting(principal)
    denied = False
    with shadow_scope() as notes:
        try:
            return await handler(request)
        except AccessDenied:
            denied = True
            raise
        finally:
            # Whatever the answer (200, 400, 404, 429, ...): enforcement would have
            # answered 403 first.
            if notes.first is not None and not denied:
                record_would_deny(
                    request.app[AUDIT],
                    notes.first,
                    resource_id=request.get(RESOURCE_ID),
                    request_id=request.get(REQUEST_ID),
                    client_ip=client_ip(request),
                )
