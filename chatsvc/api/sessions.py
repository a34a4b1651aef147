"""Routes for chat sessions."""

from __future__ import annotations

from aiohttp import web

from chatsvc.api.guard import path_uuid, principal_of, requires
from chatsvc.api.query import SessionListQuery, SessionQuery, parse_query
from chatsvc.api.responses import json_response, no_content
from chatsvc.policy import Action
from chatsvc.service import sessions
from chatsvc.service.inputs import SessionCreate, SessionUpdate, decode_json, parse_model
from chatsvc.store.sessions import SESSION_NOT_FOUND


@requires(Action.SESSION_LIST)
async def list_sessions(request: web.Request) -> web.Response:
    query = parse_query(SessionListQuery, request.query)
    items = await sessions.list_sessions(
        request.app, principal_of(request), query.limit, query.offset, query.include_messages
    )
    return json_response(items)


@requires(Action.SESSION_CREATE)
async def create_session(request: web.Request) -> web.Response:
    body = parse_model(SessionCreate, decode_json(await request.read()))
    created = await sessions.create_session(request.app, principal_of(request), body)
    return json_response(created, status=201)


@requires(Action.SESSION_READ, id_param="session_id")
async def get_session(request: web.Request) -> web.Response:
    include = parse_query(SessionQuery, request.query).include_messages
    session_id = path_uuid(request, "session_id", SESSION_NOT_FOUND)
    session = await sessions.get_session(request.app, principal_of(request), session_id, include)
    return json_response(session)


@requires(Action.SESSION_UPDATE, id_param="session_id")
async def update_session(request: web.Request) -> web.Response:
    body = parse_model(SessionUpdate, decode_json(await request.read()))
    session_id = path_uuid(request, "session_id", SESSION_NOT_FOUND)
    updated = await sessions.update_session(request.app, principal_of(request), session_id, body)
    return json_response(updated)


@requires(Action.SESSION_DELETE, id_param="session_id")
async def delete_session(request: web.Request) -> web.Response:
    session_id = path_uuid(request, "session_id", SESSION_NOT_FOUND)
    await sessions.delete_session(request.app, principal_of(request), session_id)
    return no_content()


def setup(app: web.Application) -> None:
    app.router.add_get("/api/chat/sessions", list_sessions)
    app.router.add_post("/api/chat/sessions", create_session)
    app.router.add_get("/api/chat/sessions/{session_id}", get_session)
    app.router.add_put("/api/chat/sessions/{session_id}", update_session)
    app.router.add_delete("/api/chat/sessions/{session_id}", delete_session)
