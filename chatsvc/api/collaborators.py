"""Routes for session collaborators."""

from __future__ import annotations

from aiohttp import web

from chatsvc.api.guard import path_uuid, principal_of, requires
from chatsvc.api.responses import json_response, no_content
from chatsvc.api.schemas import CollaboratorAdd, decode_json, parse_model
from chatsvc.errors import FieldError, NotFound, ValidationFailed
from chatsvc.keys import DB_SESSIONS
from chatsvc.policy import Action, authorize
from chatsvc.realtime.events import collaborators_changed_event, publish
from chatsvc.store import collaborators, sessions, users
from chatsvc.store.collaborators import COLLABORATOR_NOT_FOUND
from chatsvc.store.sessions import SESSION_NOT_FOUND


@requires(Action.COLLABORATOR_LIST, id_param="session_id")
async def list_collaborators(request: web.Request) -> web.Response:
    principal = principal_of(request)
    session_id = path_uuid(request, "session_id", SESSION_NOT_FOUND)
    async with request.app[DB_SESSIONS]() as db:
        _, facts = await sessions.load_session(db, session_id, principal.user_id)
        authorize(principal, "collaborator.list", facts)
        items = await collaborators.list_collaborators(db, session_id)
    return json_response(items)


@requires(Action.COLLABORATOR_ADD, id_param="session_id")
async def add_collaborator(request: web.Request) -> web.Response:
    principal = principal_of(request)
    body = parse_model(CollaboratorAdd, decode_json(await request.read()))
    session_id = path_uuid(request, "session_id", SESSION_NOT_FOUND)
    async with request.app[DB_SESSIONS]() as db:
        session, facts = await sessions.load_session(db, session_id, principal.user_id)
        authorize(principal, "collaborator.add", facts)
        found = await users.find_user_by_email(db, body.email.strip(), principal.issuer)
        if found is None:
            raise NotFound("User not found")
        user_id, email = found
        if user_id == session["user_id"]:
            raise ValidationFailed(
                "The owner cannot be a collaborator",
                [FieldError("email", "is the session's owner")],
            )
        entry, created = await collaborators.add_collaborator(db, session_id, user_id, email)
    if created:
        publish(request.app, session_id, collaborators_changed_event(user_id, added=True))
    return json_response(entry, status=201 if created else 200)


@requires(Action.COLLABORATOR_REMOVE, id_param="session_id")
async def remove_collaborator(request: web.Request) -> web.Response:
    principal = principal_of(request)
    session_id = path_uuid(request, "session_id", SESSION_NOT_FOUND)
    async with request.app[DB_SESSIONS]() as db:
        _, facts = await sessions.load_session(db, session_id, principal.user_id)
        authorize(principal, "collaborator.remove", facts)
        user_id = path_uuid(request, "user_id", COLLABORATOR_NOT_FOUND)
        await collaborators.remove_collaborator(db, session_id, user_id)
    publish(request.app, session_id, collaborators_changed_event(user_id, added=False))
    return no_content()


def setup(app: web.Application) -> None:
    base = "/api/chat/sessions/{session_id}/collaborators"
    app.router.add_get(base, list_collaborators)
    app.router.add_post(base, add_collaborator)
    app.router.add_delete(base + "/{user_id}", remove_collaborator)
