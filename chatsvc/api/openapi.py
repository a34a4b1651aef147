"""``GET /openapi.json``: the OpenAPI 3.1 document, derived from the route table.

Paths, parameters (from the query models), request bodies and responses (from
the body and response models) and the statuses come from each route's
declaration (:mod:`chatsvc.api.routes`); the level in a 403 description comes
from :data:`chatsvc.policy.RULES`. Nothing here repeats a route.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import orjson
from aiohttp import web
from pydantic import TypeAdapter

from chatsvc.api.models import Problem
from chatsvc.api.routing import ROUTE_TABLE, Call, Route
from chatsvc.http.identity import PROTECTED_PREFIX
from chatsvc.policy import RULES, level_detail

OPENAPI_VERSION = "3.1.0"
REF_TEMPLATE = "#/components/schemas/{model}"
PROBLEM_JSON = "application/problem+json"

ERROR_DESCRIPTIONS = {
    400: "Invalid request: a body, path or query value failed validation",
    401: "No token, or an invalid one",
    403: "Denied",
    404: "Not found (also for a malformed id in the path)",
    409: "Several users have this email: add by user_id",
    413: "Request body larger than the limit (1 MiB by default)",
    429: "Too many messages; retry after Retry-After seconds",
    503: "The identity provider's keys or the database are unavailable",
}
SUCCESS_DESCRIPTIONS = {101: "Switching Protocols", 204: "Done"}

Routes = tuple[Route[Any, Any], ...]
SchemaKey = tuple[str, str]  # ("body" | "response", "METHOD path"), or ("problem", "")


def is_public(route: Route[Any, Any]) -> bool:
    return not route.path.startswith(PROTECTED_PREFIX)


def error_statuses(route: Route[Any, Any]) -> list[int]:
    """What a route can answer besides success: read from its declaration."""
    statuses = set(route.errors)
    if not route.websocket:  # a refused socket is closed with a reason instead
        if not is_public(route):
            statuses |= {401, 503}  # the token; the keys and the database
        if route.action is not None:
            statuses.add(403)
        if (route.query is not None and route.query.model_fields) or route.body is not None:
            statuses.add(400)
        if route.body is not None:
            statuses.add(413)
        if route.ids:
            statuses.add(404)
    return sorted(statuses)


def _name(route: Route[Any, Any]) -> str:
    return f"{route.method} {route.path}"


def _schemas(routes: Routes) -> tuple[dict[SchemaKey, Any], dict[str, Any]]:
    """Every body and response schema, with each model once in the components.

    Validation mode for responses too: a key that a response may leave out
    (``recent_messages``, ``errors``) is then not listed as required."""
    inputs: list[tuple[SchemaKey, Any, TypeAdapter[Any]]] = [
        (("problem", ""), "validation", TypeAdapter(Problem))
    ]
    for route in routes:
        if route.body is not None:
            inputs.append((("body", _name(route)), "validation", TypeAdapter(route.body)))
        if route.adapter is not None:
            inputs.append((("response", _name(route)), "validation", route.adapter))
    found, definitions = TypeAdapter.json_schemas(inputs, ref_template=REF_TEMPLATE)
    return {key: schema for (key, _), schema in found.items()}, definitions.get("$defs", {})


def _parameter_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A query field's schema as a parameter's: no title, no ``null`` (absent is absent)."""
    schema = {key: value for key, value in schema.items() if key not in ("title", "description")}
    choices = schema.pop("anyOf", None)
    if choices is not None:
        values = [choice for choice in choices if choice != {"type": "null"}]
        if len(values) == 1:
            schema = {**values[0], **schema}
        else:
            schema["anyOf"] = values
    if schema.get("default", ...) is None:
        del schema["default"]
    return schema


def _parameters(route: Route[Any, Any]) -> list[dict[str, Any]]:
    parameters = [
        {
            "name": path_id.name,
            "in": "path",
            "schema": {"type": "string", "format": "uuid"},
            "required": True,
            "description": path_id.description,
        }
        for path_id in route.ids
    ]
    if route.query is not None:
        schema = route.query.model_json_schema()
        required = set(schema.get("required", ()))
        for name, field in schema["properties"].items():
            parameter = {
                "name": name,
                "in": "query",
                "schema": _parameter_schema(field),
                "required": name in required,
            }
            if "description" in field:
                parameter["description"] = field["description"]
            parameters.append(parameter)
    return parameters


def _problem(status: int, description: str, problem: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": problem}},
    }
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    if status == 429:
        response["headers"] = {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}}
    return response


def _responses(route: Route[Any, Any], schemas: dict[SchemaKey, Any]) -> dict[str, Any]:
    response_schema = schemas.get(("response", _name(route)))
    success: dict[str, Any]
    if response_schema is None:
        success = {"description": SUCCESS_DESCRIPTIONS.get(route.status, "OK")}
    else:
        success = {
            "description": route.summary,
            "content": {"application/json": {"schema": response_schema}},
        }
    responses = {str(route.status): success}
    for status, description in route.also.items():
        responses[str(status)] = {**success, "description": description}
    for status in error_statuses(route):
        description = ERROR_DESCRIPTIONS[status]
        if status == 403 and route.action is not None:
            description = (
                f"`{level_detail(RULES[route.action].level)}`; or the action's rule denies; or, "
                "signed in by cookie, the CSRF token is missing"
            )
        responses[str(status)] = _problem(status, description, schemas[("problem", "")])
    return responses


def _operation_id(route: Route[Any, Any]) -> str:
    words = route.path.strip("/").translate(str.maketrans("/.", "__", "{}"))
    return f"{route.method.lower()}_{words}"


def _operation(route: Route[Any, Any], schemas: dict[SchemaKey, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": _operation_id(route),
        "summary": route.summary,
        "tags": [route.tag],
        "responses": _responses(route, schemas),
    }
    if route.description:
        doc["description"] = route.description
    parameters = _parameters(route)
    if parameters:
        doc["parameters"] = parameters
    if route.body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas[("body", _name(route))]}},
        }
    if is_public(route):
        doc["security"] = []
    return doc


def build_document(routes: Iterable[Route[Any, Any]]) -> dict[str, Any]:
    table = tuple(routes)
    schemas, components = _schemas(table)
    paths: dict[str, dict[str, Any]] = {}
    for route in table:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas)
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
            "schemas": components,
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


@lru_cache(maxsize=4)
def _document_json(table: Routes) -> bytes:
    return orjson.dumps(build_document(table))


async def serve(call: Call[None, None]) -> web.Response:
    return web.Response(body=_document_json(call.app[ROUTE_TABLE]), content_type="application/json")
