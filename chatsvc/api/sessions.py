"""Routes for chat sessions."""

from __future__ import annotations

from aiohttp import web

from chatsvc.api.guard import path_uuid, principal_of, requires
from chatsvc.api.params import bool_param, int_param
from chatsvc.api.responses import json_response, no_content
from chatsvc.api.schemas import SessionCreate, SessionUpdate, decode_json, parse_model, reject_nulls
from chatsvc.keys import DB_SESSIONS
from chatsvc.policy import Action, authorize, list_scope
from chatsvc.realtime.events import publish, session_deleted_frame, session_updated_frame
from chatsvc.store import messages, sessions
from chatsvc.store.sessions import SESSION_NOT_FOUND

CONTENT_FIELDS = frozenset({"title", "description", "chat_settings"})


@requires(Action.SESSION_LIST)
async def list_sessions(request: web.Request) -> web.Response:
    principal = principal_of(request)
    limit = int_param(request, "limit", 50, 1, 200)
    offset = int_param(request, "offset", 0, 0)
    include = bool_param(request, "include_messages", False)
    async with request.app[DB_SESSIONS]() as db:
        items = await sessions.list_sessions(
            db, list_scope(principal), principal.user_id, limit, offset, include
        )
    return json_response(items)


@requires(Action.SESSION_CREATE)
async def create_session(request: web.Request) -> web.Response:
    body = parse_model(SessionCreate, decode_json(await request.read()))
    async with request.app[DB_SESSIONS]() as db:
        created = await sessions.create_session(
            db,
            principal_of(request).user_id,
            body.title,
            body.description,
            body.is_shared,
            body.chat_settings,
        )
    return json_response(created, status=201)


@requires(Action.SESSION_READ, id_param="session_id")
async def get_session(request: web.Request) -> web.Response:
    principal = principal_of(request)
    include = bool_param(request, "include_messages", True)
    session_id = path_uuid(request, "session_id", SESSION_NOT_FOUND)
    async with request.app[DB_SESSIONS]() as db:
        session, facts = await sessions.load_session(db, session_id, principal.user_id)
        authorize(principal, "session.read", facts)
        if include:
            session["messages"] = await messages.list_messages(db, session_id, limit=None)
    return json_response(session)


@requires(Action.SESSION_UPDATE, id_param="session_id")
async def update_session(request: web.Request) -> web.Response:
    principal = principal_of(request)
    body = parse_model(SessionUpdate, decode_json(await request.read()))
    changes = reject_nulls(body)
    session_id = path_uuid(request, "session_id", SESSION_NOT_FOUND)
    async with request.app[DB_SESSIONS]() as db:
        session, facts = await sessions.load_session(db, session_id, principal.user_id)
        sharing = "is_shared" in changes and changes["is_shared"] != session["is_shared"]
        if not sharing:
            changes.pop("is_shared", None)
        if CONTENT_FIELDS & changes.keys() or not sharing:
            authorize(principal, "session.update", facts)
        if sharing:
            authorize(principal, "session.share", facts)
        if not changes:
            return json_response(session)
        updated = await sessions.update_session(db, session_id, changes)
    publish(request.app, session_id, session_updated_frame(updated))
    return json_response(updated)


@requires(Action.SESSION_DELETE, id_param="session_id")
async def delete_session(request: web.Request) -> web.Response:
    principal = principal_of(request)
    session_id = path_uuid(request, "session_id", SESSION_NOT_FOUND)
    async with request.app[DB_SESSIONS]() as db:
        _, facts = await sessions.load_session(db, session_id, principal.user_id)
        authorize(principal, "session.delete", facts)
        await sessions.delete_session(db, session_id)
    publish(request.app, session_id, session_deleted_frame(session_id))
    return no_content()


def setup(app: web.Application) -> None:
    app.router.add_get("/api/chat/sessions", list_sessions)
    app.router.add_post("/api/chat/sessions", create_session)
    app.router.add_get("/api/chat/sessions/{session_id}", get_session)
    app.router.add_put("/api/chat/sessions/{session_id}", update_session)
    app.router.add_delete("/api/chat/sessions/{session_id}", delete_session)
