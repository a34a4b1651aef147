"""What a route declaration is, and how one becomes an aiohttp route.

A :class:`Route` says everything about one route: method and path, the policy
action (None: no route-level check), the path ids, the query, body and response
models, the success status and the handler. :func:`mount` registers the routes;
``/openapi.json`` (:mod:`chatsvc.api.openapi`) is built from the same
declarations. For every request the checks run in the policy's order:
authentication (middleware) -> the route's level -> the query and the body
(400) -> the path ids (404 for a malformed one) -> the handler, where the use
case checks existence and the action's rule.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Generic, TypeVar, cast

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from chatsvc.api.query import Query, parse_query
from chatsvc.auth.principal import Principal
from chatsvc.errors import NotFound
from chatsvc.keys import ACTION, PRINCIPAL, RESOURCE_ID
from chatsvc.policy import Action, require_level
from chatsvc.service.inputs import decode_json, parse_model

# The answers are written by orjson: the response model, serialising the same
# dicts with pydantic (``TypeAdapter.dump_json``), writes the same bytes but
# some six times slower (500 messages: 1.3 ms against 0.2 ms; the timestamps,
# kept as ``+00:00``, cost a Python call each). The tests turn this on: then
# every answer is also validated and serialised by its model, and must match.
VERIFY_ANSWERS = False


class AnswerMismatch(AssertionError):
    """An answer that is not what its response model describes."""


def verify_answer(adapter: TypeAdapter[Any], result: Any, body: bytes) -> None:
    """``result`` has the model's shape (strictly: types, required keys) and the
    model writes it as ``body`` (so it has no key the model does not declare)."""
    try:
        adapter.validate_python(result, strict=True)
        written = adapter.dump_json(result, warnings="error")
    except (ValidationError, PydanticSerializationError) as exc:
        raise AnswerMismatch(str(exc)) from None
    if written != body:
        raise AnswerMismatch(f"the model writes {written[:300]!r}, the answer is {body[:300]!r}")


Q = TypeVar("Q", bound=Query | None)
B = TypeVar("B", bound=BaseModel | None)


@dataclass(frozen=True, slots=True)
class PathId:
    """A UUID in the path. A malformed one is simply not found: 404 ``not_found``
    at once, or, with ``not_found=None``, None for the handler (whose use case
    answers 404 once it has checked what comes first)."""

    name: str
    description: str
    not_found: str | None

    def parse(self, raw: str) -> uuid.UUID | None:
        try:
            return uuid.UUID(raw)
        except ValueError:
            if self.not_found is None:
                return None
            raise NotFound(self.not_found) from None


@dataclass(frozen=True, slots=True)
class Reply:
    """A result answered with another status than the route's own (one of ``Route.also``)."""

    value: Any
    status: int


@dataclass(frozen=True, slots=True)
class Call(Generic[Q, B]):
    """What a handler gets: the request, its parsed query and body, and the path ids."""

    request: web.Request
    query: Q
    body: B
    ids: Mapping[str, uuid.UUID | None]

    @property
    def app(self) -> web.Application:
        return self.request.app

    @property
    def principal(self) -> Principal:
        return self.request[PRINCIPAL]

    def id(self, name: str) -> uuid.UUID:
        """A path id declared with a ``not_found`` wording (so never None)."""
        value = self.ids[name]
        if value is None:
            raise LookupError(f"{name} is declared without not_found: read it from ids")
        return value


@dataclass(frozen=True, eq=False)  # compared and hashed by identity
class Route(Generic[Q, B]):
    method: str
    path: str
    action: Action | None  # None: no route-level check (public routes, /api/me)
    # None: the route is registered by its own module (the WebSocket) and only documented here.
    handler: Callable[[Call[Q, B]], Awaitable[Any]] | None
    summary: str
    ids: tuple[PathId, ...] = ()  # the first one is the audited resource id
    query: type[Q] | None = None
    body: type[B] | None = None
    # The answer's model: it serialises the handler's result. None: no body (204),
    # or the handler answers a web.Response of its own (text, a document).
    response: Any = None
    status: int = 200
    also: Mapping[int, str] = field(default_factory=dict)  # other success statuses
    errors: tuple[int, ...] = ()  # error statuses the declaration does not tell (429)
    tag: str = "chat"
    description: str = ""
    websocket: bool = False  # refusals close the socket: only ``errors`` are answered

    @cached_property
    def adapter(self) -> TypeAdapter[Any] | None:
        return None if self.response is None else TypeAdapter(self.response)

    def endpoint(self) -> Handler:
        """The aiohttp handler: the checks in order, the handler, the answer."""
        handler = self.handler
        if handler is None:
            raise ValueError(f"{self.method} {self.path} is registered elsewhere")
        action, ids = self.action, self.ids
        # The type variables also admit None (a route without a query or a body).
        query = cast("type[Query] | None", self.query)
        body = cast("type[BaseModel] | None", self.body)
        resource = ids[0].name if ids else None
        answer = self.answer

        async def endpoint(request: web.Request) -> web.StreamResponse:
            if action is not None:
                request[ACTION] = action
                request[RESOURCE_ID] = request.match_info.get(resource) if resource else None
                require_level(request[PRINCIPAL], action)
            parsed_query: Any = parse_query(query, request.query) if query is not None else None
            parsed_body: Any = None
            if body is not None:
                parsed_body = parse_model(body, decode_json(await request.read()))
            found = {
                path_id.name: path_id.parse(request.match_info[path_id.name]) for path_id in ids
            }
            return answer(await handler(Call(request, parsed_query, parsed_body, found)))

        endpoint.__name__ = endpoint.__qualname__ = handler.__name__
        return endpoint

    def answer(self, result: Any) -> web.StreamResponse:
        if isinstance(result, web.StreamResponse):
            return result
        status = self.status
        if isinstance(result, Reply):
            status, result = result.status, result.value
        adapter = self.adapter
        if adapter is None:
            if result is not None:
                raise TypeError(f"{self.method} {self.path} declares no response model")
            return web.Response(status=status)
        body = orjson.dumps(result)
        if VERIFY_ANSWERS:
            verify_answer(adapter, result, body)
        return web.Response(body=body, status=status, content_type="application/json")


ROUTE_TABLE = web.AppKey[tuple[Route[Any, Any], ...]]("route_table")


def mount(app: web.Application, routes: Iterable[Route[Any, Any]]) -> None:
    """Register the routes (those with a handler) and keep the table for ``/openapi.json``."""
    table = tuple(routes)
    for route in table:
        named = {part[1:-1] for part in route.path.split("/") if part.startswith("{")}
        if named != {path_id.name for path_id in route.ids}:
            raise ValueError(f"{route.method} {route.path}: declare exactly its path ids")
        if route.handler is None:
            continue
        if route.method == "GET":
            app.router.add_get(route.path, route.endpoint())  # and HEAD
        else:
            app.router.add_route(route.method, route.path, route.endpoint())
    app[ROUTE_TABLE] = table
