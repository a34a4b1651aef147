"""Routes for chat messages."""

from __future__ import annotations

from aiohttp import web

from chatsvc.api.guard import path_uuid, principal_of, requires
from chatsvc.api.query import MessageListQuery, parse_query
from chatsvc.api.responses import json_response, no_content
from chatsvc.policy import Action
from chatsvc.service import messages
from chatsvc.service.inputs import MessageCreate, MessageUpdate, decode_json, parse_model
from chatsvc.store.messages import MESSAGE_NOT_FOUND
from chatsvc.store.sessions import SESSION_NOT_FOUND


@requires(Action.MESSAGE_LIST, id_param="session_id")
async def list_messages(request: web.Request) -> web.Response:
    query = parse_query(MessageListQuery, request.query)
    session_id = path_uuid(request, "session_id", SESSION_NOT_FOUND)
    items = await messages.list_messages(
        request.app,
        principal_of(request),
        session_id,
        query.limit,
        query.offset,
        query.after_seq,
        query.before_seq,
    )
    return json_response(items)


@requires(Action.MESSAGE_SEND, id_param="session_id")
async def create_message(request: web.Request) -> web.Response:
    body = parse_model(MessageCreate, decode_json(await request.read()))
    session_id = path_uuid(request, "session_id", SESSION_NOT_FOUND)
    message, created = await messages.send_message(
        request.app, principal_of(request), session_id, body
    )
    return json_response(message, status=201 if created else 200)


@requires(Action.MESSAGE_UPDATE, id_param="message_id")
async def update_message(request: web.Request) -> web.Response:
    body = parse_model(MessageUpdate, decode_json(await request.read()))
    message_id = path_uuid(request, "message_id", MESSAGE_NOT_FOUND)
    updated = await messages.update_message(request.app, principal_of(request), message_id, body)
    return json_response(updated)


@requires(Action.MESSAGE_DELETE, id_param="message_id")
async def delete_message(request: web.Request) -> web.Response:
    message_id = path_uuid(request, "message_id", MESSAGE_NOT_FOUND)
    await messages.delete_message(request.app, principal_of(request), message_id)
    return no_content()


def setup(app: web.Application) -> None:
    app.router.add_get("/api/chat/sessions/{session_id}/messages", list_messages)
    app.router.add_post("/api/chat/sessions/{session_id}/messages", create_message)
    app.router.add_put("/api/chat/messages/{message_id}", update_message)
    app.router.add_delete("/api/chat/messages/{message_id}", delete_message)
