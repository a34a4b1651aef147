"""Route declarations: each chat route names its action; the route-level check
runs before anything else in the handler (policy order: auth -> level -> ...)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from chatsvc.auth.principal import Principal
from chatsvc.errors import NotFound
from chatsvc.keys import ACTION, PRINCIPAL, RESOURCE_ID
from chatsvc.policy import Action, require_level


def requires(action: Action, *, id_param: str | None = None) -> Callable[[Handler], Handler]:
    """Declare the route's action; deny with ``Requires <level> permission`` below its level."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            request[ACTION] = action
            request[RESOURCE_ID] = request.match_info.get(id_param) if id_param else None
            require_level(request[PRINCIPAL], action)
            return await handler(request)

        guarded.chatsvc_action = action  # type: ignore[attr-defined]
        return guarded

    return decorate


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def path_uuid(request: web.Request, name: str, not_found: str) -> uuid.UUID:
    """A UUID from the path; a malformed one is simply not found (404)."""
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise NotFound(not_found) from None
