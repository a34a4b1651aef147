"""Every HTTP route, declared once: the router, the route-level check, the query
and body parsing, the answer's serialisation and ``/openapi.json`` all come
from this table (see :class:`chatsvc.api.routing.Route`). A route's level is
its action's level in :data:`chatsvc.policy.RULES`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from chatsvc.api import audit, collaborators, health, me, messages, openapi, sessions, users
from chatsvc.api.models import (
    AuditEventOut,
    AuditVerifyOut,
    CollaboratorOut,
    HealthOut,
    MeOut,
    MessageOut,
    ReadinessOut,
    SessionDetail,
    SessionListItem,
    SessionOut,
    UserOut,
)
from chatsvc.api.query import (
    AuditQuery,
    MessageListQuery,
    Query,
    Range,
    SessionListQuery,
    SessionQuery,
    UserQuery,
)
from chatsvc.api.routing import PathId, Route
from chatsvc.policy import Action
from chatsvc.service.inputs import (
    CollaboratorAdd,
    MessageCreate,
    MessageUpdate,
    SessionCreate,
    SessionUpdate,
)
from chatsvc.store.messages import MESSAGE_NOT_FOUND
from chatsvc.store.sessions import SESSION_NOT_FOUND

SESSION_ID = PathId("session_id", "The chat session", SESSION_NOT_FOUND)
MESSAGE_ID = PathId("message_id", "The chat message", MESSAGE_NOT_FOUND)
# Malformed: not found, but only once the session's checks have passed (the use case says so).
COLLABORATOR_ID = PathId("user_id", "The collaborator's user id", None)

SESSIONS = "/api/chat/sessions"
SESSION = "/api/chat/sessions/{session_id}"
MESSAGES = "/api/chat/sessions/{session_id}/messages"
MESSAGE = "/api/chat/messages/{message_id}"
COLLABORATORS = "/api/chat/sessions/{session_id}/collaborators"


class WebSocketQuery(Query):
    """Documentation only: :mod:`chatsvc.realtime.ws` reads these itself."""

    since_seq: Annotated[int, Range(0)] | None = Field(
        None, description="Deliver every message after this seq first"
    )
    access_token: str | None = Field(
        None, description="The token, for clients that cannot set a header"
    )


ROUTES: tuple[Route[Any, Any], ...] = (
    # --- operations, no token -------------------------------------------------------
    Route(
        "GET", "/healthz", None, health.healthz, "Liveness", response=HealthOut, tag="operations"
    ),
    Route(
        "GET",
        "/readyz",
        None,
        health.readyz,
        "Readiness (database and identity keys)",
        response=ReadinessOut,
        also={503: "Not ready: the database or the identity keys are unavailable, or draining"},
        tag="operations",
    ),
    Route("GET", "/metrics", None, health.metrics, "Prometheus metrics", tag="operations"),
    Route("GET", "/openapi.json", None, openapi.serve, "This document", tag="operations"),
    # --- identity -------------------------------------------------------------------
    Route(
        "GET",
        "/api/me",
        None,
        me.me,
        "The caller: id, email, level and groups",
        response=MeOut,
        tag="identity",
    ),
    # --- sessions -------------------------------------------------------------------
    Route(
        "GET",
        SESSIONS,
        Action.SESSION_LIST,
        sessions.list_sessions,
        "List the sessions the caller may see, newest first",
        query=SessionListQuery,
        response=list[SessionListItem],
    ),
    Route(
        "POST",
        SESSIONS,
        Action.SESSION_CREATE,
        sessions.create_session,
        "Create a session",
        body=SessionCreate,
        response=SessionOut,
        status=201,
    ),
    Route(
        "GET",
        SESSION,
        Action.SESSION_READ,
        sessions.get_session,
        "A session",
        ids=(SESSION_ID,),
        query=SessionQuery,
        response=SessionDetail,
    ),
    Route(
        "PUT",
        SESSION,
        Action.SESSION_UPDATE,
        sessions.update_session,
        "Change the given fields of a session",
        ids=(SESSION_ID,),
        body=SessionUpdate,
        response=SessionOut,
    ),
    Route(
        "DELETE",
        SESSION,
        Action.SESSION_DELETE,
        sessions.delete_session,
        "Delete a session and its messages",
        ids=(SESSION_ID,),
        status=204,
    ),
    # --- messages -------------------------------------------------------------------
    Route(
        "GET",
        MESSAGES,
        Action.MESSAGE_LIST,
        messages.list_messages,
        "A page of messages, oldest first",
        ids=(SESSION_ID,),
        query=MessageListQuery,
        response=list[MessageOut],
    ),
    Route(
        "POST",
        MESSAGES,
        Action.MESSAGE_SEND,
        messages.create_message,
        "Send a message",
        ids=(SESSION_ID,),
        body=MessageCreate,
        response=MessageOut,
        status=201,
        also={200: "A retry: the message first stored with this client_msg_id"},
        errors=(429,),
    ),
    Route(
        "PUT",
        MESSAGE,
        Action.MESSAGE_UPDATE,
        messages.update_message,
        "Edit a message",
        ids=(MESSAGE_ID,),
        body=MessageUpdate,
        response=MessageOut,
        errors=(429,),  # an edit is broadcast like a send, and costs like one
    ),
    Route(
        "DELETE",
        MESSAGE,
        Action.MESSAGE_DELETE,
        messages.delete_message,
        "Delete a message",
        ids=(MESSAGE_ID,),
        status=204,
        errors=(429,),
    ),
    # --- collaborators --------------------------------------------------------------
    Route(
        "GET",
        COLLABORATORS,
        Action.COLLABORATOR_LIST,
        collaborators.list_collaborators,
        "A session's collaborators",
        ids=(SESSION_ID,),
        response=list[CollaboratorOut],
    ),
    Route(
        "POST",
        COLLABORATORS,
        Action.COLLABORATOR_ADD,
        collaborators.add_collaborator,
        "Add a collaborator by user_id, or by an email only one user has (signed in once)",
        ids=(SESSION_ID,),
        body=CollaboratorAdd,
        response=CollaboratorOut,
        status=201,
        also={200: "Already a collaborator"},
        errors=(409,),
    ),
    Route(
        "DELETE",
        COLLABORATORS + "/{user_id}",
        Action.COLLABORATOR_REMOVE,
        collaborators.remove_collaborator,
        "Remove a collaborator",
        ids=(SESSION_ID, COLLABORATOR_ID),
        status=204,
    ),
    # --- the user directory ---------------------------------------------------------
    Route(
        "GET",
        "/api/users",
        Action.USER_LIST,
        users.list_users,
        "Users who have signed in, by the start of their email (to add as collaborators)",
        query=UserQuery,
        response=list[UserOut],
        tag="users",
    ),
    # --- audit ----------------------------------------------------------------------
    Route(
        "GET",
        "/api/chat/audit",
        Action.AUDIT_READ,
        audit.list_audit_events,
        "The audit trail of denials, newest first",
        query=AuditQuery,
        response=list[AuditEventOut],
        tag="audit",
    ),
    Route(
        "GET",
        "/api/chat/audit/verify",
        Action.AUDIT_READ,
        audit.verify_audit_trail,
        "Re-compute the audit trail's hash chain: is every event as it was written?",
        response=AuditVerifyOut,
        tag="audit",
    ),
    # --- realtime: registered by chatsvc.realtime, documented here --------------------
    Route(
        "GET",
        "/api/chat/sessions/{session_id}/ws",
        None,
        None,
        "The session's WebSocket",
        ids=(SESSION_ID,),
        query=WebSocketQuery,
        status=101,
        errors=(400, 503),
        tag="realtime",
        websocket=True,
        description=(
            "A WebSocket upgrade (frames are JSON text). The upgrade is accepted, then closed "
            "with 1008 and a reason when the connection may not stay: `Authentication "
            "required`, `Access denied`, `Session not found` or `Invalid since_seq`."
        ),
    ),
)
