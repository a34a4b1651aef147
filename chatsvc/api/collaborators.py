"""Routes for session collaborators."""

from __future__ import annotations

import uuid

from aiohttp import web

from chatsvc.api.guard import path_uuid, principal_of, requires
from chatsvc.api.responses import json_response, no_content
from chatsvc.policy import Action
from chatsvc.service import collaborators
from chatsvc.service.inputs import CollaboratorAdd, decode_json, parse_model
from chatsvc.store.sessions import SESSION_NOT_FOUND


@requires(Action.COLLABORATOR_LIST, id_param="session_id")
async def list_collaborators(request: web.Request) -> web.Response:
    session_id = path_uuid(request, "session_id", SESSION_NOT_FOUND)
    items = await collaborators.list_collaborators(request.app, principal_of(request), session_id)
    return json_response(items)


@requires(Action.COLLABORATOR_ADD, id_param="session_id")
async def add_collaborator(request: web.Request) -> web.Response:
    body = parse_model(CollaboratorAdd, decode_json(await request.read()))
    session_id = path_uuid(request, "session_id", SESSION_NOT_FOUND)
    entry, created = await collaborators.add_collaborator(
        request.app, principal_of(request), session_id, body
    )
    return json_response(entry, status=201 if created else 200)


@requires(Action.COLLABORATOR_REMOVE, id_param="session_id")
async def remove_collaborator(request: web.Request) -> web.Response:
    session_id = path_uuid(request, "session_id", SESSION_NOT_FOUND)
    try:
        user_id: uuid.UUID | None = uuid.UUID(request.match_info["user_id"])
    except ValueError:
        user_id = None
    await collaborators.remove_collaborator(request.app, principal_of(request), session_id, user_id)
    return no_content()


def setup(app: web.Application) -> None:
    base = "/api/chat/sessions/{session_id}/collaborators"
    app.router.add_get(base, list_collaborators)
    app.router.add_post(base, add_collaborator)
    app.router.add_delete(base + "/{user_id}", remove_collaborator)
