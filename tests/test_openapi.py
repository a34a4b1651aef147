"""``GET /openapi.json``: the OpenAPI 3.1 document, generated from the pydantic
models, covers every route; and the service keeps to it for any input
(property-based, with schemathesis)."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from chatsvc.api import models, routing
from chatsvc.api.openapi import REF_TEMPLATE, build_document, error_statuses
from chatsvc.api.routes import ROUTES
from chatsvc.app import create_app
from chatsvc.service import inputs
from tests.conftest import create_session, send_message, settings_for, sign_in

PUBLIC = {"/healthz", "/readyz", "/metrics", "/openapi.json"}


@pytest.fixture(autouse=True)
def _verify_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every answer must be what its response model writes (chatsvc.api.models)."""
    monkeypatch.setattr(routing, "VERIFY_ANSWERS", True)


@pytest.fixture
def app(tmp_path, okta) -> web.Application:
    """The app as ``run.py`` builds it; its routes exist before it starts (no database needed)."""
    return create_app(settings_for(tmp_path, None, okta))


@pytest.fixture
def document() -> dict[str, Any]:
    return orjson.loads(orjson.dumps(build_document(ROUTES)))


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): op
        for path, item in document["paths"].items()
        for method, op in item.items()
    }


async def test_the_document_is_served_without_a_token(client):
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert "X-Request-ID" in resp.headers
    body = await resp.json()
    assert body["openapi"] == "3.1.0"
    assert body == orjson.loads(orjson.dumps(build_document(ROUTES)))


def test_every_api_route_and_every_public_route_is_documented(app, document):
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD"
        and route.resource is not None
        and (route.resource.canonical.startswith("/api/") or route.resource.canonical in PUBLIC)
        # What the identity provider calls (its own authentication; docs/protocol.md)
        # is not part of the clients' API.
        and not route.resource.canonical.startswith("/api/idp/")
    }
    assert set(operations(document)) == served


MODELS = [
    inputs.SessionCreate,
    inputs.SessionUpdate,
    inputs.MessageCreate,
    inputs.MessageUpdate,
    inputs.CollaboratorAdd,
    models.SessionOut,
    models.SessionListItem,
    models.SessionDetail,
    models.MessageOut,
    models.CollaboratorOut,
    models.MeOut,
    models.UserOut,
    models.AuditEventOut,
    models.AuditVerifyOut,
    models.HealthOut,
    models.ReadinessOut,
    models.Problem,
]


def test_component_schemas_are_generated_from_the_models(document, subtests):
    components = document["components"]["schemas"]
    for model in MODELS:
        with subtests.test(model.__name__):
            expected = TypeAdapter(model).json_schema(ref_template=REF_TEMPLATE)
            nested = expected.pop("$defs", {})
            assert components[model.__name__] == expected
            for name, schema in nested.items():
                assert components[name] == schema


def path_names(path: str) -> set[str]:
    return {part[1:-1] for part in path.split("/") if part.startswith("{")}


def test_each_route_documents_its_declaration(document, subtests):
    ops = operations(document)
    for route in ROUTES:
        with subtests.test(f"{route.method} {route.path}"):
            op = ops[(route.method, route.path)]
            statuses = {route.status, *route.also, *error_statuses(route)}
            assert {int(status) for status in op["responses"]} == statuses
            params = op.get("parameters", [])
            query = set(route.query.model_fields) if route.query is not None else set()
            assert {p["name"] for p in params if p["in"] == "query"} == query
            assert {p["name"] for p in params if p["in"] == "path"} == path_names(route.path)
            if route.body is None:
                assert "requestBody" not in op
            else:
                schema = op["requestBody"]["content"]["application/json"]["schema"]
                assert schema == {"$ref": f"#/components/schemas/{route.body.__name__}"}


# What the declarations add up to, for the routes whose answers are easy to get wrong.
STATUSES = {
    ("GET", "/api/me"): {200, 401, 503},
    ("GET", "/api/chat/sessions"): {200, 400, 401, 403, 503},
    ("DELETE", "/api/chat/sessions/{session_id}"): {204, 401, 403, 404, 503},
    ("POST", "/api/chat/sessions/{session_id}/messages"): {
        200, 201, 400, 401, 403, 404, 413, 429, 503
    },
    ("DELETE", "/api/chat/messages/{message_id}"): {204, 401, 403, 404, 429, 503},
    ("GET", "/readyz"): {200, 503},
    ("GET", "/api/chat/sessions/{session_id}/ws"): {101, 400, 503},
}  # fmt: skip


def test_the_statuses_of_some_routes(document):
    ops = operations(document)
    for key, statuses in STATUSES.items():
        assert {int(status) for status in ops[key]["responses"]} == statuses, key


def test_every_error_is_problem_json(document, subtests):
    for (method, path), op in operations(document).items():
        for status, response in op["responses"].items():
            if int(status) < 400 or path == "/readyz":  # readiness answers its report, also 503
                continue
            with subtests.test(f"{method} {path} {status}"):
                content = response["content"]["application/problem+json"]["schema"]
                assert content == {"$ref": "#/components/schemas/Problem"}


def test_401_names_www_authenticate_and_429_names_retry_after(document):
    ops = operations(document)
    assert "WWW-Authenticate" in ops[("GET", "/api/me")]["responses"]["401"]["headers"]
    send = ops[("POST", "/api/chat/sessions/{session_id}/messages")]
    assert send["responses"]["429"]["headers"]["Retry-After"]["schema"]["type"] == "integer"


def test_bearer_tokens_are_required_except_on_public_routes(document):
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert document["security"] == [{"bearer": []}]
    for (_, path), op in operations(document).items():
        assert ("security" in op and op["security"] == []) == (path in PUBLIC), path


def test_a_403_names_the_route_level(document, subtests):
    for method, path, level in [
        ("GET", "/api/chat/sessions", "read"),
        ("POST", "/api/chat/sessions", "write"),
        ("DELETE", "/api/chat/messages/{message_id}", "write"),
        ("GET", "/api/chat/audit", "admin"),
        ("GET", "/api/users", "write"),
    ]:
        with subtests.test(f"{method} {path}"):
            description = operations(document)[(method, path)]["responses"]["403"]["description"]
            assert f"Requires {level} permission" in description


async def test_the_documented_limits_are_the_enforced_ones(client, admin, subtests):
    session = await create_session(client, admin)
    for (method, path), op in operations(build_document(ROUTES)).items():
        # A required parameter (a string: `query` of the user directory) gets a plain value.
        required = "".join(
            f"&{param['name']}=a"
            for param in op.get("parameters", [])
            if param["in"] == "query" and param["required"]
        )
        for param in op.get("parameters", []):
            if param["name"] != "limit":
                continue
            target = path.replace("{session_id}", session["id"])
            maximum = param["schema"]["maximum"]
            with subtests.test(f"{method} {path}"):
                at = await client.get(f"{target}?limit={maximum}{required}", headers=admin.headers)
                over = await client.get(
                    f"{target}?limit={maximum + 1}{required}", headers=admin.headers
                )
                assert (at.status, over.status) == (200, 400)


# --- the response models describe the answers -----------------------------------------


async def test_every_answer_is_what_its_model_writes(client, admin, writer, other_writer):
    """With VERIFY_ANSWERS, an answer unlike its model is a 500: walk every JSON route."""
    await sign_in(client, other_writer)
    session = await create_session(client, writer, chat_settings={"a": [1, 2.5, None]})
    base = f"/api/chat/sessions/{session['id']}"
    message = await send_message(client, writer, session["id"], metadata={"m": {"n": 1}})
    calls = [
        ("GET", "/healthz", None, None),
        ("GET", "/readyz", None, None),
        ("GET", "/api/me", writer, None),
        ("GET", "/api/chat/sessions", writer, None),
        ("GET", "/api/chat/sessions?include_messages=true", writer, None),
        ("GET", base, writer, None),
        ("GET", base + "?include_messages=false", writer, None),
        ("PUT", base, writer, {"title": "renamed", "is_shared": True}),
        ("PUT", base, writer, {}),
        ("GET", base + "/messages", writer, None),
        ("POST", base + "/messages", writer, {"content": "c", "client_msg_id": "k"}),
        ("POST", base + "/messages", writer, {"content": "c", "client_msg_id": "k"}),
        ("PUT", f"/api/chat/messages/{message['id']}", writer, {"content": "edited"}),
        ("POST", base + "/collaborators", writer, {"email": other_writer.email}),
        ("POST", base + "/collaborators", writer, {"email": other_writer.email}),
        ("GET", base + "/collaborators", writer, None),
        ("GET", "/api/users?query=other", writer, None),
        ("GET", "/api/users?query=nobody-has-this", writer, None),
        ("GET", "/api/chat/audit", writer, None),  # a denial, for the next one to list
        ("GET", "/api/chat/audit", admin, None),
    ]
    for method, path, who, body in calls:
        headers = who.headers if who is not None else {}
        resp = await client.request(method, path, json=body, headers=headers)
        assert resp.status in (200, 201, 403), (method, path, await resp.text())
        assert resp.status != 403 or path == "/api/chat/audit"


def test_an_answer_unlike_its_model_is_refused():
    adapter = TypeAdapter(models.CollaboratorOut)
    entry = {"user_id": uuid.uuid4(), "email": "e@example.com", "added_at": datetime.now(UTC)}
    routing.verify_answer(adapter, entry, orjson.dumps(entry))
    for wrong in (
        {**entry, "extra": 1},  # a key the model does not declare
        {key: value for key, value in entry.items() if key != "email"},  # a missing one
        {**entry, "user_id": str(entry["user_id"])},  # the wrong type
    ):
        with pytest.raises(routing.AnswerMismatch):
            routing.verify_answer(adapter, wrong, orjson.dumps(wrong))


def test_the_models_write_timestamps_as_the_api_always_has():
    stamp = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    entry = {"user_id": uuid.uuid4(), "email": "e@example.com", "added_at": stamp}
    written = TypeAdapter(models.CollaboratorOut).dump_json(entry)
    assert written == orjson.dumps(entry)
    assert b'"2024-05-06T07:08:09.123456+00:00"' in written


# --- property-based: any input, only documented answers --------------------------

SCHEMA = schemathesis.openapi.from_dict(build_document(ROUTES))
FUZZED = [
    result.ok()
    for result in SCHEMA.get_all_operations()
    if not result.ok().path.endswith("/ws")  # a WebSocket upgrade, not a JSON route
]
STRATEGIES = {
    op.label: st.one_of(
        op.as_strategy(GenerationMode.POSITIVE), op.as_strategy(GenerationMode.NEGATIVE)
    )
    for op in FUZZED
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@dataclass
class Target:
    """Real ids, so that generated requests also reach the store, not only 404."""

    path_parameters: dict[str, str]


@pytest.fixture
async def fuzz_client(aiohttp_client, sqlite_template, tmp_path, okta):
    """SQLite only: the run is about the HTTP contract, and costs seconds per database.
    Database-specific input handling (U+0000 on PostgreSQL) has its own tests in
    test_validation.py, on both databases."""
    database = tmp_path / "fuzz.db"
    shutil.copy(sqlite_template, database)
    settings = settings_for(tmp_path, f"sqlite+aiosqlite:///{database}", okta)
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def target(fuzz_client, admin, writer, other_writer) -> Target:
    session = await create_session(fuzz_client, writer, is_shared=True)
    message = await send_message(fuzz_client, writer, session["id"])
    collaborator = await sign_in(fuzz_client, other_writer)
    await sign_in(fuzz_client, admin)
    resp = await fuzz_client.post(
        f"/api/chat/sessions/{session['id']}/collaborators",
        json={"email": other_writer.email},
        headers=writer.headers,
    )
    assert resp.status == 201
    return Target(
        {"session_id": session["id"], "message_id": message["id"], "user_id": collaborator["id"]}
    )


async def call(client, case, authorization: str | None) -> schemathesis.Response:
    kwargs = case.as_transport_kwargs(base_url=str(client.make_url("")).rstrip("/"))
    headers = dict(kwargs["headers"])
    if authorization is not None:
        headers["Authorization"] = authorization
    prepared = requests.Request(
        method=kwargs["method"],
        url=kwargs["url"],
        headers=headers,
        params=kwargs.get("params"),
        json=kwargs.get("json"),
        data=kwargs.get("data"),
    ).prepare()
    sent_headers = {k: v for k, v in prepared.headers.items() if k.lower() != "content-length"}
    resp = await client.request(
        prepared.method, prepared.path_url, data=prepared.body, headers=sent_headers
    )
    return schemathesis.Response(
        status_code=resp.status,
        headers={name: resp.headers.getall(name) for name in resp.headers},
        content=await resp.read(),
        request=prepared,
        elapsed=0.0,
        verify=False,
    )


@pytest.mark.parametrize("label", list(STRATEGIES))
@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_any_request_gets_a_documented_answer(
    fuzz_client, admin, writer, reader, nobody, target, label, data, caplog
):
    # The target's real session, message and collaborator make the generated
    # requests reach the store and change it, so later examples meet the state
    # earlier ones left (created, edited, deleted): a stateful run without links.
    case = data.draw(STRATEGIES[label])
    if data.draw(st.booleans(), label="real ids"):
        for name in case.path_parameters:
            case.path_parameters[name] = target.path_parameters[name]
    callers = {"admin": admin, "writer": writer, "reader": reader, "no level": nobody}
    caller = data.draw(st.sampled_from([*callers, "as generated"]), label="caller")
    authorization = callers.get(caller)
    caplog.clear()
    response = await call(
        fuzz_client, case, f"Bearer {authorization.token}" if authorization else None
    )
    assert response.status_code != 503, response.content  # the database is up
    case.validate_response(response, checks=CHECKS)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "Traceback" not in logged and "unhandled_error" not in logged
    for known in callers.values():
        assert known.token not in logged
        assert known.token not in response.content.decode(errors="replace")
