"""``GET /api/chat/sessions/{id}/ws``: the WebSocket protocol (see ``docs/protocol.md``).

The upgrade is always accepted; a connection that may not stay is then closed
with 1008 and its reason, checked in the policy's order. The handler's task is
the only one that reads; frames go straight to the member's transport
(:class:`~chatsvc.realtime.hub.Connection`); the hub and timers may close. Frame handlers are registered by type in :data:`FRAME_HANDLERS`, and one
function (:func:`handle_frame`) maps what they raise to the frame error codes.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import WSMessage, WSMsgType, web
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from chatsvc.auth.principal import Principal
from chatsvc.errors import (
    AccessDenied,
    ChatError,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    Unauthenticated,
    ValidationFailed,
)
from chatsvc.http.forwarded import client_ip
from chatsvc.http.identity import websocket_route
from chatsvc.http.shadow import record_would_deny
from chatsvc.keys import (
    AUDIT,
    AUTHENTICATOR,
    BROWSER_SESSION_ID,
    DB_SESSIONS,
    HUB,
    METRICS,
    PRINCIPAL,
    REQUEST_ID,
    SETTINGS,
)
from chatsvc.policy import Action, WouldDeny, check, require_level, shadow_scope
from chatsvc.realtime import frames, wire
from chatsvc.realtime.frames import (
    ACCESS_DENIED,
    ACCESS_REVOKED,
    AUTH_REQUIRED,
    INVALID_SINCE,
    ROOM_FULL,
    SESSION_NOT_FOUND,
    UNAVAILABLE,
    USER_BUSY,
    Disconnect,
)
from chatsvc.realtime.hub import Connection, LiveRoom, Room, presence_changed
from chatsvc.service import messages as message_service
from chatsvc.service.inputs import MessageCreate, parse_model
from chatsvc.store import messages, sessions
from chatsvc.store.models import User


def record_ws_denial(app: web.Application, conn: Connection, action: Action, reason: str) -> None:
    app[AUDIT].deny(
        conn.principal,
        action,
        reason,
        resource_id=str(conn.session_id),
        request_id=conn.request_id,
        client_ip=conn.client_ip,
    )


def record_ws_would_deny(
    app: web.Application, conn: Connection, would: WouldDeny, reason: str | None = None
) -> None:
    """Shadow mode: what enforcement would have refused on this socket (``reason``:
    its close reason, where enforcement would have closed it)."""
    record_would_deny(
        app[AUDIT],
        would,
        resource_id=str(conn.session_id),
        request_id=conn.request_id,
        client_ip=conn.client_ip,
        reason=reason,
    )


def _has_a_level(principal: Principal) -> bool:
    """The route level (read: any level at all), through the policy so that in
    shadow mode a caller without one is noted as enforcement would refuse them."""
    try:
        require_level(principal, Action.WS_CONNECT)
    except AccessDenied:
        return False
    return True


def _since_seq(request: web.Request) -> int | str | None:
    if not request.query_string:
        return None  # (the usual connect: no query parsed and kept for the socket's life)
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
        # aiohttp refuses a message of max_msg_size bytes or more; chatsvc closes
        # only frames *larger* than the limit.
        max_msg_size=settings.ws_max_frame_bytes + 1,
        compress=settings.ws_compress,
        timeout=5.0,
    )

    # The checks need no I/O up to the session lookup, which runs before the
    # upgrade: if the database is down, the client gets a plain 503 (problem
    # JSON) rather than a socket that opens and dies.
    refusal: tuple[Disconnect, Action | None] | None = None
    principal = request.get(PRINCIPAL)
    since = _since_seq(request)
    hub = app[HUB]
    live: LiveRoom | None = None
    snapshot: tuple[uuid.UUID, bool, set[uuid.UUID]] | None = None
    last_seq = 0
    with shadow_scope() as shadow:
        if principal is None:
            refusal = (AUTH_REQUIRED, None)
        elif not _has_a_level(principal):
            refusal = (ACCESS_DENIED, Action.WS_CONNECT)
        elif since == "invalid":
            refusal = (INVALID_SINCE, None)
        else:
            try:
                session_id = uuid.UUID(request.match_info["session_id"])
            except ValueError:
                refusal = (SESSION_NOT_FOUND, None)
            else:
                # A room with live members here knows its facts (kept current by
                # events): no query. Otherwise read them, and the whole access
                # snapshot for the room this connect opens.
                live = hub.live_room(session_id, principal.user_id)
                if live is not None:
                    facts, last_seq = live.facts, live.last_seq
                else:
                    try:
                        async with app[DB_SESSIONS]() as db:
                            session, facts = await sessions.load_session(
                                db, session_id, principal.user_id
                            )
                            snapshot = await sessions.access_snapshot(db, session_id)
                        if snapshot is None:
                            raise NotFound("gone")
                        last_seq = session["last_seq"]
                    except NotFound:
                        refusal = (SESSION_NOT_FOUND, None)
                if refusal is None:
                    try:
                        check(principal, Action.WS_CONNECT, facts)
                    except AccessDenied:
                        refusal = (ACCESS_DENIED, Action.WS_CONNECT)
    await ws.prepare(request)
    # Shadow mode: enforcement would have closed it with "Access denied" (and
    # audited that) before any other answer; a denial here is audited as itself.
    would = shadow.first if refusal is None or refusal[1] is None else None
    if would is not None:
        record_would_deny(
            app[AUDIT],
            would,
            resource_id=request.match_info["session_id"],
            request_id=request.get(REQUEST_ID),
            client_ip=client_ip(request),
            reason=ACCESS_DENIED.reason,
        )
    if refusal is not None:
        why, action = refusal
        if action is not None:
            app[AUDIT].deny(
                principal,
                action,
                why.reason,
                resource_id=request.match_info["session_id"],
                request_id=request.get(REQUEST_ID),
                client_ip=client_ip(request),
            )
        await ws.close(code=why.code, message=why.reason.encode())
        app[METRICS].ws_closes.labels(str(why.code)).inc()
        return ws
    assert principal is not None

    turned_away = None
    if hub.room_size(session_id) >= settings.ws_max_per_session:
        turned_away = ROOM_FULL
    elif hub.user_connections(principal.user_id) >= settings.ws_max_per_user:
        turned_away = USER_BUSY
    elif app[AUTHENTICATOR].revocations.covers(principal):
        # Revoked while this connect waited (the database, the upgrade): the hub
        # had no socket of it to close. No await from here to hub.add below.
        turned_away = ACCESS_REVOKED
    if turned_away is not None:
        await ws.close(code=turned_away.code, message=turned_away.reason.encode())
        app[METRICS].ws_closes.labels(str(turned_away.code)).inc()
        return ws

    conn = Connection(
        ws,
        principal,
        session_id,
        facts,
        settings.ws_send_queue_bytes,
        request.get(REQUEST_ID),
        client_ip(request),
        settings.ws_close_timeout,
    )
    conn.browser_session = request.get(BROWSER_SESSION_ID)
    conn.enforcement_closed = would is not None  # its would-deny is recorded above
    conn.log.info("event=ws_open session_id=%s user_id=%s", session_id, principal.user_id)
    conn.hold_live_frames()
    opens_room = hub.room_size(session_id) == 0
    first_socket = hub.add(conn)
    if snapshot is not None:
        hub.learn_room(session_id, snapshot, last_seq)
    try:
        # Present (across processes) before the client hears "connected": from then
        # on, closing the user's other socket is not a departure.
        if first_socket and await hub.broker.presence_join(session_id, principal.user_id):
            hub.broker.publish(presence_changed(conn, joined=True))
        if opens_room:
            await load_roster(app, session_id)
        await welcome(
            app, conn, since if isinstance(since, int) else None, last_seq, live is not None
        )
        conn.schedule_expiry(principal.expires_at)
        await receive_loop(app, conn)
    except (ConnectionError, RuntimeError) as exc:
        conn.log.debug("event=ws_dropped error=%s", type(exc).__name__)
    except (SQLAlchemyError, OSError) as exc:
        conn.log.warning("event=db_unavailable where=ws_connect error=%s", type(exc).__name__)
        conn.close(UNAVAILABLE)
    finally:
        last_here = hub.remove(conn)
        await conn.finish()
        if last_here and await hub.broker.presence_leave(session_id, principal.user_id):
            hub.broker.publish(presence_changed(conn, joined=False))
        # The code we closed with (ws.close_code is the one the client answered with).
        code = conn.closed_with.code if conn.closed_with is not None else ws.close_code
        conn.log.info("event=ws_closed code=%s", code)
        app[METRICS].ws_closes.labels(str(code)).inc()
    return ws


async def welcome(
    app: web.Application, conn: Connection, since: int | None, last_seq: int, live: bool
) -> None:
    """The ``connected`` frame, then what the client missed: from the room's ring
    when it was live and reaches back far enough, else from the database; then
    the live frames held meanwhile. (Its own coroutine, so that what it builds is
    not kept for the socket's life by the handler's frame.)"""
    hub = app[HUB]
    session_id = conn.session_id
    if live:
        # What the room released meanwhile is in its ring: start after it.
        last_seq = max(last_seq, hub.rooms[session_id].last_seq)
    connected = frames.connected(
        conn.principal, session_id, conn.permissions, last_seq, hub.online(session_id)
    )
    await conn.send_now(orjson.dumps(connected))
    # Without since_seq, start after the last_seq just reported: a message
    # committed after that read but published before hub.add() is otherwise lost.
    # A since_seq past the session's last seq resumes from the last seq: taken
    # as given it would swallow the next live messages.
    start = min(since, last_seq) if since is not None else last_seq
    backlog = hub.replay_from_ring(session_id, start, last_seq) if live else None
    if backlog is not None:
        for _seq, payload in backlog:
            await conn.send_now(payload)
        conn.replayed_seq = last_seq
    else:
        await replay_backlog(app, conn, start)
    conn.release_held_frames()
    hub.note_seq(session_id, conn.replayed_seq)


async def load_roster(app: web.Application, session_id: uuid.UUID) -> None:
    """The users present on other processes, for a room this process just opened
    (their e-mail addresses from the database: the presence store keeps ids)."""
    hub = app[HUB]
    present = await hub.broker.presence_members(session_id)
    unknown = [user_id for user_id in present if user_id not in hub.online(session_id)]
    if not unknown:
        return
    async with app[DB_SESSIONS]() as db:
        rows = await db.execute(select(User.id, User.email).where(User.id.in_(unknown)))
        hub.learn_roster(session_id, {row.id: row.email for row in rows})


async def replay_backlog(app: web.Application, conn: Connection, since: int) -> None:
    """Send every stored message after ``since`` in order; live frames wait meanwhile.

    The member was registered (and its live frames held) before the first read,
    so a message committed during the replay is either in the backlog or held,
    and :meth:`Connection.release_held_frames` drops the ones the backlog had."""
    page_size = app[SETTINGS].ws_backlog_page
    after = since
    while True:
        async with app[DB_SESSIONS]() as db:
            page = await messages.list_messages(db, conn.session_id, page_size, after_seq=after)
        for message in page:
            # Awaited (and drained) page by page: live frames are held meanwhile.
            await conn.ws.send_frame(orjson.dumps(frames.message(message)), WSMsgType.TEXT)
            after = message["seq"]
        conn.replayed_seq = after
        if len(page) < page_size:
            return


async def receive_loop(app: web.Application, conn: Connection) -> None:
    """Handle the client's frames in order. While more of them are already
    waiting (a pipelining sender), the room is corked: the broadcasts they cause
    go out together (:meth:`Hub.cork`), and the cork ends once none waits."""
    hub = app[HUB]
    corked: Room | None = None
    try:
        async for msg in conn.ws:
            if corked is None and wire.frames_waiting(conn.ws):
                corked = hub.cork(conn.session_id)
            await handle_message(app, conn, msg)
            if corked is not None and not wire.frames_waiting(conn.ws):
                hub.uncork(corked)
                corked = None
    finally:
        if corked is not None:
            hub.uncork(corked)


async def handle_message(app: web.Application, conn: Connection, msg: WSMessage) -> None:
    if msg.type is not WSMsgType.TEXT:
        if msg.type is WSMsgType.BINARY:
            conn.send_json(frames.error("INVALID_JSON", "Frames must be JSON text"))
        return
    try:
        frame = orjson.loads(msg.data)
    except orjson.JSONDecodeError:
        frame = None
    if not isinstance(frame, dict):
        conn.send_json(frames.error("INVALID_JSON", "Frame must be a JSON object"))
        return
    await handle_frame(app, conn, frame)


async def handle_frame(app: web.Application, conn: Connection, frame: dict[str, Any]) -> None:
    """Run the frame's handler; what it raises becomes one error frame (the one map)."""
    kind = frame.get("type")
    entry = FRAME_HANDLERS.get(kind) if isinstance(kind, str) else None
    if entry is None:
        conn.send_json(frames.error("UNKNOWN_TYPE", "Unknown or missing frame type"))
        return
    action, handler = entry
    denied = False
    with shadow_scope() as shadow:
        try:
            await handler(app, conn, frame)
        except AccessDenied as exc:
            denied = True
            record_ws_denial(app, conn, exc.action or action, exc.detail)
            conn.send_json(frames.error("PERMISSION_DENIED", exc.detail))
        except ValidationFailed as exc:
            conn.send_json(frames.error("INVALID_CONTENT", exc.detail))
        except RateLimited as exc:
            text = f"{exc.detail}; retry after {exc.retry_after} s"
            conn.send_json(frames.error("RATE_LIMITED", text))
        except Unauthenticated as exc:
            conn.send_json(frames.error("INVALID_TOKEN", exc.detail))
        except (ChatError, Exception) as exc:  # database down, session deleted meanwhile, ...
            conn.log.warning("event=ws_send_failed error=%s", type(exc).__name__)
            conn.send_json(frames.error("SEND_FAILED", "The message could not be stored"))
    # Shadow mode: the frame went on (or failed otherwise) where enforcement would
    # have answered PERMISSION_DENIED first. A denial is audited as itself, alone.
    if shadow.first is not None and not denied:
        record_ws_would_deny(app, conn, shadow.first)


async def on_message(app: web.Application, conn: Connection, frame: dict[str, Any]) -> None:
    require_level(conn.principal, Action.WS_SEND)
    body = parse_model(MessageCreate, {k: v for k, v in frame.items() if k != "type"})
    message, created = await message_service.send_message(
        app, conn.principal, conn.session_id, body, Action.WS_SEND
    )
    if not created:
        # A retried client_msg_id: the original frame, to the sender only.
        conn.send_json(frames.message(message))


async def on_typing(app: web.Application, conn: Connection, frame: dict[str, Any]) -> None:
    require_level(conn.principal, Action.WS_TYPING)
    is_typing = frame.get("is_typing")
    if not isinstance(is_typing, bool):
        raise ValidationFailed("is_typing must be true or false")
    check(conn.principal, Action.WS_TYPING, conn.facts)
    app[HUB].typing(conn, is_typing)


async def on_ping(app: web.Application, conn: Connection, frame: dict[str, Any]) -> None:
    conn.send_json(frames.PONG)


async def on_auth(app: web.Application, conn: Connection, frame: dict[str, Any]) -> None:
    token = frame.get("access_token")
    if not isinstance(token, str) or not token:
        raise Unauthenticated("access_token is required")
    authenticator = app[AUTHENTICATOR]
    try:
        renewed = authenticator.mapping.acting(await authenticator.authenticate(token))
    except ServiceUnavailable as exc:  # keys or database: the old token stands
        raise Unauthenticated(exc.detail) from None
    old = conn.principal
    if (renewed.issuer, renewed.subject) != (old.issuer, old.subject):
        raise Unauthenticated("The token belongs to another user")
    before = conn.permissions
    conn.principal = renewed
    conn.schedule_expiry(renewed.expires_at)
    conn.send_json(frames.auth_ok(renewed.expires_at))
    app[HUB].reevaluate(conn, before, level_changed=renewed.level != old.level)


FrameHandler = Callable[[web.Application, Connection, dict[str, Any]], Awaitable[None]]
# Each client frame type: the action its denials are audited as, and its handler.
FRAME_HANDLERS: dict[str, tuple[Action, FrameHandler]] = {
    "message": (Action.WS_SEND, on_message),
    "typing": (Action.WS_TYPING, on_typing),
    "ping": (Action.WS_SEND, on_ping),
    "auth": (Action.WS_CONNECT, on_auth),
}


def setup(app: web.Application) -> None:
    app.router.add_get("/api/chat/sessions/{session_id}/ws", chat_socket)
