"""``GET /api/chat/sessions/{id}/ws``: the WebSocket protocol (contract section 5).

The upgrade is always accepted; a connection that may not stay is then closed
with 1008 and the contract's reason, checked in the policy's order. The handler's
task is the only one that reads; the member's writer task sends; the hub and
timers may close.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import WSMsgType, web
from sqlalchemy.exc import SQLAlchemyError

from chatsvc.api.problems import audit_denial
from chatsvc.api.schemas import MessageCreate, parse_model
from chatsvc.audit import AuditRecord, resource_type_for
from chatsvc.auth.middleware import websocket_route
from chatsvc.auth.principal import Level
from chatsvc.errors import (
    AccessDenied,
    ChatError,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    Unauthenticated,
    ValidationFailed,
)
from chatsvc.keys import AUDIT, AUTHENTICATOR, DB_SESSIONS, HUB, PRINCIPAL, REQUEST_ID, SETTINGS
from chatsvc.messaging import send_message
from chatsvc.policy import Action, authorize, require_level
from chatsvc.realtime.events import message_frame
from chatsvc.realtime.hub import POLICY_VIOLATION, TRY_AGAIN_LATER, Connection, presence_frame
from chatsvc.store import messages, sessions

REASON_AUTH = "Authentication required"
REASON_DENIED = "Access denied"
REASON_NOT_FOUND = "Session not found"
REASON_SINCE = "Invalid since_seq"
REASON_BUSY = "Too many connections"
REASON_UNAVAILABLE = "Service unavailable"
BACKLOG_PAGE = 500


def error_frame(code: str, message: str) -> dict[str, str]:
    return {"type": "error", "code": code, "message": message}


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def record_ws_denial(app: web.Application, conn: Connection, action: Action, reason: str) -> None:
    principal = conn.principal
    app[AUDIT].record(
        AuditRecord(
            user_id=principal.user_id,
            user_email=principal.email,
            permission=principal.permission,
            action=str(action),
            resource_type=resource_type_for(str(action)),
            resource_id=str(conn.session_id),
            reason=reason,
            request_id=conn.request_id,
            client_ip=conn.client_ip,
        )
    )


def _since_seq(request: web.Request) -> int | str | None:
    raw = request.query.get("since_seq")
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        return "invalid"
    return int(raw)


@websocket_route
async def chat_socket(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    settings = app[SETTINGS]
    ws = web.WebSocketResponse(
        heartbeat=settings.ws_heartbeat,
        # aiohttp refuses a message of max_msg_size bytes or more; the contract
        # closes only frames *larger* than the limit.
        max_msg_size=settings.ws_max_frame_bytes + 1,
        compress=settings.ws_compress,
        timeout=5.0,
    )

    async def refuse(reason: str, action: Action | None = None) -> web.WebSocketResponse:
        if action is not None:
            audit_denial(request, str(action), reason, request.match_info["session_id"])
        await ws.close(code=POLICY_VIOLATION, message=reason.encode())
        return ws

    # The checks need no I/O up to the session lookup, which runs before the
    # upgrade: if the database is down, the client gets a plain 503 (problem
    # JSON) rather than a socket that opens and dies.
    refusal: tuple[str, Action | None] | None = None
    principal = request.get(PRINCIPAL)
    since = _since_seq(request)
    if principal is None:
        refusal = (REASON_AUTH, None)
    elif principal.level is None:
        refusal = (REASON_DENIED, Action.WS_CONNECT)
    elif since == "invalid":
        refusal = (REASON_SINCE, None)
    else:
        try:
            session_id = uuid.UUID(request.match_info["session_id"])
            async with app[DB_SESSIONS]() as db:
                session, facts = await sessions.load_session(db, session_id, principal.user_id)
        except (ValueError, NotFound):
            refusal = (REASON_NOT_FOUND, None)
        else:
            try:
                authorize(principal, "ws.connect", facts, Action.WS_CONNECT)
            except AccessDenied:
                refusal = (REASON_DENIED, Action.WS_CONNECT)
    await ws.prepare(request)
    if refusal is not None:
        return await refuse(*refusal)
    assert principal is not None

    hub = app[HUB]
    if hub.room_size(session_id) >= settings.ws_max_per_session:
        await ws.close(code=TRY_AGAIN_LATER, message=REASON_BUSY.encode())
        return ws
    if hub.user_connections(principal.user_id) >= settings.ws_max_per_user:
        await ws.close(code=POLICY_VIOLATION, message=REASON_BUSY.encode())
        return ws

    conn = Connection(
        ws,
        principal,
        session_id,
        facts,
        settings.ws_send_queue_frames,
        settings.ws_send_queue_bytes,
        request.get(REQUEST_ID),
        request.remote,
    )
    conn.log.info("event=ws_open session_id=%s user_id=%s", session_id, principal.user_id)
    conn.hold_live_frames()
    first_socket = hub.add(conn)
    try:
        # Present (across processes) before the client hears "connected": from then
        # on, closing the user's other socket is not a departure.
        if first_socket and await hub.broker.presence_join(session_id, principal.user_id):
            hub.broker.publish(session_id, presence_frame("user_joined", principal))
        await ws.send_frame(
            orjson.dumps(
                {
                    "type": "connected",
                    "session_id": session_id,
                    "user_id": principal.user_id,
                    "user_email": principal.email,
                    "permission": principal.permission,
                    "can_send": conn.can_send,
                    "last_seq": session["last_seq"],
                }
            ),
            WSMsgType.TEXT,
        )
        # Without since_seq, start after the last_seq just reported: a message
        # committed after that read but published before hub.add() is otherwise lost.
        await replay_backlog(app, conn, since if isinstance(since, int) else session["last_seq"])
        conn.release_held_frames()
        hub.note_seq(session_id, conn.replayed_seq)
        conn.start_writer()
        conn.schedule_expiry(principal.expires_at)
        await receive_loop(app, conn)
    except (ConnectionError, RuntimeError) as exc:
        conn.log.debug("event=ws_dropped error=%s", type(exc).__name__)
    except (SQLAlchemyError, OSError) as exc:
        conn.log.warning("event=db_unavailable where=ws_connect error=%s", type(exc).__name__)
        await conn.close(TRY_AGAIN_LATER, REASON_UNAVAILABLE)
    finally:
        await conn.stop_writer()
        if hub.remove(conn) and await hub.broker.presence_leave(session_id, principal.user_id):
            hub.broker.publish(session_id, presence_frame("user_left", conn.principal))
        if not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close()
        conn.log.info("event=ws_closed code=%s", ws.close_code)
    return ws


async def replay_backlog(app: web.Application, conn: Connection, since: int) -> None:
    """Send every stored message after ``since`` in order; live frames wait meanwhile.

    The member was registered (and its live frames held) before the first read,
    so a message committed during the replay is either in the backlog or held,
    and :meth:`Connection.release_held_frames` drops the ones the backlog had."""
    after = since
    while True:
        async with app[DB_SESSIONS]() as db:
            page = await messages.list_messages(db, conn.session_id, BACKLOG_PAGE, after_seq=after)
        for message in page:
            await conn.ws.send_frame(orjson.dumps(message_frame(message)), WSMsgType.TEXT)
            after = message["seq"]
        conn.replayed_seq = after
        if len(page) < BACKLOG_PAGE:
            return


async def receive_loop(app: web.Application, conn: Connection) -> None:
    ws = conn.ws
    async for msg in ws:
        if msg.type is not WSMsgType.TEXT:
            if msg.type is WSMsgType.BINARY:
                conn.send_json(error_frame("INVALID_JSON", "Frames must be JSON text"))
            continue
        try:
            frame = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            frame = None
        if not isinstance(frame, dict):
            conn.send_json(error_frame("INVALID_JSON", "Frame must be a JSON object"))
            continue
        handler = FRAME_HANDLERS.get(frame.get("type"))  # type: ignore[arg-type]
        if handler is None:
            conn.send_json(error_frame("UNKNOWN_TYPE", "Unknown or missing frame type"))
            continue
        await handler(app, conn, frame)


def _deny(app: web.Application, conn: Connection, exc: AccessDenied, action: Action) -> None:
    record_ws_denial(app, conn, action, exc.detail)
    conn.send_json(error_frame("PERMISSION_DENIED", exc.detail))


async def on_message(app: web.Application, conn: Connection, frame: dict[str, Any]) -> None:
    try:
        require_level(conn.principal, Action.WS_SEND, Level.WRITE)
        body = parse_model(MessageCreate, {k: v for k, v in frame.items() if k != "type"})
        message, created = await send_message(
            app, conn.principal, conn.session_id, body, Action.WS_SEND
        )
    except AccessDenied as exc:
        _deny(app, conn, exc, Action.WS_SEND)
        return
    except ValidationFailed as exc:
        conn.send_json(error_frame("INVALID_CONTENT", exc.detail))
        return
    except RateLimited as exc:
        conn.send_json(
            error_frame("RATE_LIMITED", f"{exc.detail}; retry after {exc.retry_after} s")
        )
        return
    except (ChatError, Exception) as exc:  # database down, session deleted meanwhile, ...
        conn.log.warning("event=ws_send_failed error=%s", type(exc).__name__)
        conn.send_json(error_frame("SEND_FAILED", "The message could not be stored"))
        return
    if not created:
        # A retried client_msg_id: the original frame, to the sender only.
        conn.send_json(message_frame(message))


async def on_typing(app: web.Application, conn: Connection, frame: dict[str, Any]) -> None:
    try:
        require_level(conn.principal, Action.WS_TYPING, Level.WRITE)
    except AccessDenied as exc:
        _deny(app, conn, exc, Action.WS_TYPING)
        return
    is_typing = frame.get("is_typing")
    if not isinstance(is_typing, bool):
        conn.send_json(error_frame("INVALID_CONTENT", "is_typing must be true or false"))
        return
    try:
        authorize(conn.principal, "message.send", conn.facts, Action.WS_TYPING)
    except AccessDenied as exc:
        _deny(app, conn, exc, Action.WS_TYPING)
        return
    app[HUB].typing(conn, is_typing)


async def on_ping(app: web.Application, conn: Connection, frame: dict[str, Any]) -> None:
    conn.send_json({"type": "pong"})


async def on_auth(app: web.Application, conn: Connection, frame: dict[str, Any]) -> None:
    token = frame.get("access_token")
    if not isinstance(token, str) or not token:
        conn.send_json(error_frame("INVALID_TOKEN", "access_token is required"))
        return
    try:
        renewed = await app[AUTHENTICATOR].authenticate(token)
    except (Unauthenticated, ServiceUnavailable) as exc:
        conn.send_json(error_frame("INVALID_TOKEN", exc.detail))
        return
    old = conn.principal
    if (renewed.issuer, renewed.subject) != (old.issuer, old.subject):
        conn.send_json(error_frame("INVALID_TOKEN", "The token belongs to another user"))
        return
    conn.principal = renewed
    conn.schedule_expiry(renewed.expires_at)
    conn.send_json({"type": "auth_ok", "expires_at": iso(renewed.expires_at)})
    app[HUB].reevaluate(conn, level_changed=renewed.level != old.level)


FrameHandler = Callable[[web.Application, Connection, dict[str, Any]], Awaitable[None]]
FRAME_HANDLERS: dict[str, FrameHandler] = {
    "message": on_message,
    "typing": on_typing,
    "ping": on_ping,
    "auth": on_auth,
}


def setup(app: web.Application) -> None:
    app.router.add_get("/api/chat/sessions/{session_id}/ws", chat_socket)
