"""``GET /openapi.json``: the OpenAPI 3.1 document of the HTTP API.

Field schemas come from the pydantic models in :mod:`chatsvc.service.inputs` (the
same models that validate the bodies), never from a copy kept here. This module
only says which route takes and answers which model, its parameters, and which
error statuses it can answer. The route level in each 403 description is read
from the handler's declared action, so it follows :mod:`chatsvc.policy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from chatsvc.api.query import AUDIT_LIMIT_MAX, MESSAGE_LIMIT_MAX, SESSION_LIMIT_MAX
from chatsvc.api.responses import json_response
from chatsvc.policy import RULES, Action, level_detail
from chatsvc.service import inputs as schemas

OPENAPI_VERSION = "3.1.0"
REF_TEMPLATE = "#/components/schemas/{model}"
PROBLEM_JSON = "application/problem+json"


ERROR_DESCRIPTIONS = {
    400: "Invalid request: a body, path or query value failed validation",
    401: "No token, or an invalid one",
    403: "Denied",
    404: "Not found (also for a malformed id in the path)",
    413: "Request body larger than the limit (1 MiB by default)",
    429: "Too many messages; retry after Retry-After seconds",
    503: "The identity provider's keys or the database are unavailable",
}


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" or "query"
    schema: dict[str, Any]
    description: str = ""

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "in": self.where, "schema": self.schema}
        doc["required"] = self.where == "path"
        if self.description:
            doc["description"] = self.description
        return doc


def _uuid(name: str, description: str) -> Param:
    return Param(name, "path", {"type": "string", "format": "uuid"}, description)


def _limit(default: int, maximum: int) -> Param:
    return Param(
        "limit", "query", {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}
    )


def _bool(name: str, default: bool, description: str) -> Param:
    return Param(name, "query", {"type": "boolean", "default": default}, description)


SESSION_ID = _uuid("session_id", "The chat session")
MESSAGE_ID = _uuid("message_id", "The chat message")
USER_ID = _uuid("user_id", "The collaborator's user id")
OFFSET = Param("offset", "query", {"type": "integer", "minimum": 0, "default": 0})


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    success: int
    response: type[BaseModel] | None = None
    many: bool = False  # the response is a list of ``response``
    body: type[BaseModel] | None = None
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    public: bool = False
    tag: str = "chat"
    description: str = ""
    extra_responses: dict[str, str] = field(default_factory=dict)  # status -> description


CHAT = (401, 403, 503)  # every chat route: token, level, availability
WITH_QUERY = (*CHAT, 400)  # a query parameter can be invalid
WITH_BODY = (*CHAT, 400, 413)

OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/healthz", "Liveness", 200, public=True, tag="operations"),
    Operation(
        "get",
        "/readyz",
        "Readiness (database and identity keys)",
        200,
        schemas.ReadinessOut,
        public=True,
        tag="operations",
        extra_responses={"503": "Not ready: the database or the identity keys are unavailable"},
    ),
    Operation("get", "/metrics", "Prometheus metrics", 200, public=True, tag="operations"),
    Operation("get", "/openapi.json", "This document", 200, public=True, tag="operations"),
    Operation(
        "get",
        "/api/me",
        "The caller: id, email, level and groups",
        200,
        schemas.MeOut,
        errors=(401, 503),
        tag="identity",
    ),
    Operation(
        "get",
        "/api/chat/sessions",
        "List the sessions the caller may see, newest first",
        200,
        schemas.SessionListItem,
        many=True,
        errors=WITH_QUERY,
        params=(
            _limit(50, SESSION_LIMIT_MAX),
            OFFSET,
            _bool("include_messages", False, "Add each session's 5 newest messages"),
        ),
    ),
    Operation(
        "post",
        "/api/chat/sessions",
        "Create a session",
        201,
        schemas.SessionOut,
        body=schemas.SessionCreate,
        errors=WITH_BODY,
    ),
    Operation(
        "get",
        "/api/chat/sessions/{session_id}",
        "A session",
        200,
        schemas.SessionDetail,
        errors=(*WITH_QUERY, 404),
        params=(SESSION_ID, _bool("include_messages", True, "Add every message, oldest first")),
    ),
    Operation(
        "put",
        "/api/chat/sessions/{session_id}",
        "Change the given fields of a session",
        200,
        schemas.SessionOut,
        body=schemas.SessionUpdate,
        params=(SESSION_ID,),
        errors=(*WITH_BODY, 404),
    ),
    Operation(
        "delete",
        "/api/chat/sessions/{session_id}",
        "Delete a session and its messages",
        204,
        params=(SESSION_ID,),
        errors=(*CHAT, 404),
    ),
    Operation(
        "get",
        "/api/chat/sessions/{session_id}/messages",
        "A page of messages, oldest first",
        200,
        schemas.MessageOut,
        many=True,
        errors=(*WITH_QUERY, 404),
        params=(
            SESSION_ID,
            _limit(100, MESSAGE_LIMIT_MAX),
            OFFSET,
            Param(
                "after_seq",
                "query",
                {"type": "integer", "minimum": 0},
                "The first `limit` messages after this seq",
            ),
            Param(
                "before_seq",
                "query",
                {"type": "integer", "minimum": 0},
                "The `limit` messages just before this seq (scroll-back)",
            ),
        ),
    ),
    Operation(
        "post",
        "/api/chat/sessions/{session_id}/messages",
        "Send a message",
        201,
        schemas.MessageOut,
        body=schemas.MessageCreate,
        params=(SESSION_ID,),
        errors=(*WITH_BODY, 404, 429),
        extra_responses={"200": "A retry: the message first stored with this client_msg_id"},
    ),
    Operation(
        "put",
        "/api/chat/messages/{message_id}",
        "Edit a message",
        200,
        schemas.MessageOut,
        body=schemas.MessageUpdate,
        params=(MESSAGE_ID,),
        errors=(*WITH_BODY, 404),
    ),
    Operation(
        "delete",
        "/api/chat/messages/{message_id}",
        "Delete a message",
        204,
        params=(MESSAGE_ID,),
        errors=(*CHAT, 404),
    ),
    Operation(
        "get",
        "/api/chat/sessions/{session_id}/collaborators",
        "A session's collaborators",
        200,
        schemas.CollaboratorOut,
        many=True,
        params=(SESSION_ID,),
        errors=(*CHAT, 404),
    ),
    Operation(
        "post",
        "/api/chat/sessions/{session_id}/collaborators",
        "Add a collaborator by email (the user must have signed in once)",
        201,
        schemas.CollaboratorOut,
        body=schemas.CollaboratorAdd,
        params=(SESSION_ID,),
        errors=(*WITH_BODY, 404),
        extra_responses={"200": "Already a collaborator"},
    ),
    Operation(
        "delete",
        "/api/chat/sessions/{session_id}/collaborators/{user_id}",
        "Remove a collaborator",
        204,
        params=(SESSION_ID, USER_ID),
        errors=(*CHAT, 404),
    ),
    Operation(
        "get",
        "/api/chat/audit",
        "The audit trail of denials, newest first",
        200,
        schemas.AuditEventOut,
        many=True,
        errors=WITH_QUERY,
        tag="audit",
        params=(
            _limit(100, AUDIT_LIMIT_MAX),
            OFFSET,
            Param("user_id", "query", {"type": "string", "format": "uuid"}),
            Param("action", "query", {"type": "string", "maxLength": 64}),
        ),
    ),
    Operation(
        "get",
        "/api/chat/sessions/{session_id}/ws",
        "The session's WebSocket",
        101,
        errors=(400, 503),
        tag="realtime",
        params=(
            SESSION_ID,
            Param(
                "since_seq",
                "query",
                {"type": "integer", "minimum": 0},
                "Deliver every message after this seq first",
            ),
            Param(
                "access_token",
                "query",
                {"type": "string"},
                "The token, for clients that cannot set a header",
            ),
        ),
        description=(
            "A WebSocket upgrade (frames are JSON text). The upgrade is accepted, then closed "
            "with 1008 and a reason when the connection may not stay: `Authentication "
            "required`, `Access denied`, `Session not found` or `Invalid since_seq`."
        ),
    ),
)

MODELS: tuple[type[BaseModel], ...] = (
    schemas.SessionCreate,
    schemas.SessionUpdate,
    schemas.MessageCreate,
    schemas.MessageUpdate,
    schemas.CollaboratorAdd,
    schemas.SessionOut,
    schemas.SessionListItem,
    schemas.SessionDetail,
    schemas.MessageOut,
    schemas.CollaboratorOut,
    schemas.MeOut,
    schemas.AuditEventOut,
    schemas.ReadinessOut,
    schemas.Problem,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


def component_schemas() -> dict[str, Any]:
    """Every model's JSON schema, with nested models hoisted into the components.

    Validation mode for responses too: a key that a response may leave out
    (``recent_messages``, ``errors``) is then not listed as required."""
    found: dict[str, Any] = {}
    for model in MODELS:
        schema = model.model_json_schema(ref_template=REF_TEMPLATE)
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    return found


def _problem(status: int, description: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": _ref(schemas.Problem)}},
    }
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    if status == 429:
        response["headers"] = {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}}
    return response


def _success(op: Operation) -> dict[str, Any]:
    if op.response is None:
        return {"description": {101: "Switching Protocols", 204: "Done"}.get(op.success, "OK")}
    schema: dict[str, Any] = _ref(op.response)
    if op.many:
        schema = {"type": "array", "items": schema}
    return {"description": op.summary, "content": {"application/json": {"schema": schema}}}


def _responses(op: Operation, action: str | None) -> dict[str, Any]:
    responses = {str(op.success): _success(op)}
    for extra, description in op.extra_responses.items():
        responses[extra] = {**_success(op), "description": description}
    for status in op.errors:
        error = ERROR_DESCRIPTIONS[status]
        if status == 403 and action is not None:
            error = (
                f"`{level_detail(RULES[Action(action)].level)}`; or the action's rule denies; or, "
                "signed in by cookie, the CSRF token is missing"
            )
        responses[str(status)] = _problem(status, error)
    return responses


def _operation_id(op: Operation) -> str:
    words = op.path.strip("/").translate(str.maketrans("/.", "__", "{}"))
    return f"{op.method}_{words}"


def _operation(op: Operation, action: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": _operation_id(op),
        "summary": op.summary,
        "tags": [op.tag],
        "responses": _responses(op, action),
    }
    if op.description:
        doc["description"] = op.description
    if op.params:
        doc["parameters"] = [param.document() for param in op.params]
    if op.body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(op.body)}},
        }
    if op.public:
        doc["security"] = []
    return doc


def _actions(app: web.Application | None) -> dict[tuple[str, str], str]:
    """(method, path) -> the action the handler declares (see :func:`chatsvc.api.guard.requires`)."""
    found: dict[tuple[str, str], str] = {}
    if app is None:
        return found
    for route in app.router.routes():
        info = route.resource.canonical if route.resource is not None else None
        action = getattr(route.handler, "chatsvc_action", None)
        if info is not None and action is not None and str(action) in RULES:
            found[(route.method.lower(), info)] = str(action)
    return found


def build_document(app: web.Application | None = None) -> dict[str, Any]:
    actions = _actions(app)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, actions.get((op.method, op.path)))
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "chatsvc",
            "version": "1",
            "description": (
                "Chat sessions and messages behind Okta access tokens. Errors are RFC 9457 "
                "problem JSON; every response carries X-Request-ID."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An Okta access token (RS256 or ES256)",
                }
            },
        },
        "security": [{"bearer": []}],
    }


def setup(app: web.Application) -> None:
    built: list[dict[str, Any]] = []  # built once, at the first request (all routes exist then)

    async def openapi(request: web.Request) -> web.Response:
        if not built:
            built.append(build_document(request.app))
        return json_response(built[0])

    app.router.add_get("/openapi.json", openapi)
