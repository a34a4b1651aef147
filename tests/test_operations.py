"""Operations (contract §4): health, readiness and metrics need no token; every
response carries ``X-Request-ID``; every error is problem JSON; tokens never
reach a log; a database failure answers 503 without leaking SQL."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import create_async_engine

from chatsvc.app import create_app
from chatsvc.http.access_log import AccessLogger
from chatsvc.keys import DB_ENGINE, DB_SESSIONS
from tests.conftest import create_session, settings_for

UNREACHABLE_DB = "postgresql+asyncpg://postgres@127.0.0.1:1/x"
MIB = 1024 * 1024


async def problem_of(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    body = await resp.json(content_type=None)
    assert set(body) >= {"type", "title", "status", "detail", "code", "request_id"}
    assert body["status"] == status
    assert body["request_id"] == resp.headers["X-Request-ID"]
    return body


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


# --- health, readiness, metrics ----------------------------------------------------


async def test_healthz_is_ok_without_a_token(client):
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_readyz_reports_each_dependency(client):
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert await resp.json() == {
        "status": "ok",
        "database": "up",
        "keys": "loaded",
        "broker": "none",
    }


async def test_metrics_count_requests_by_route_and_status(client, writer):
    await client.get("/api/me", headers=writer.headers)
    await client.get("/api/me")
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    requests = samples(await resp.text(), "chatsvc_http_requests_total")
    assert requests[(("method", "GET"), ("route", "/api/me"), ("status", "200"))] == 1
    assert requests[(("method", "GET"), ("route", "/api/me"), ("status", "401"))] == 1


async def test_metrics_count_permission_cache_hits_and_misses(client, writer, reader):
    for who in (writer, writer, writer, reader):
        await client.get("/api/me", headers=who.headers)
    cache = samples(await (await client.get("/metrics")).text(), "chatsvc_permission_cache_total")
    assert cache == {(("result", "hit"),): 2, (("result", "miss"),): 2}


# --- request ids ------------------------------------------------------------------------

REQUESTS = {
    "health": ("GET", "/healthz", 200),
    "metrics": ("GET", "/metrics", 200),
    "no token": ("GET", "/api/me", 401),
    "unknown route": ("GET", "/no/such/route", 404),
    "static page": ("GET", "/", 200),
}


@pytest.mark.parametrize(("method", "path", "status"), REQUESTS.values(), ids=REQUESTS.keys())
async def test_every_response_has_a_request_id(client, method, path, status):
    resp = await client.request(method, path)
    assert resp.status == status
    assert len(resp.headers["X-Request-ID"]) >= 16


async def test_request_ids_are_unique(client):
    ids = {(await client.get("/healthz")).headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5


async def test_valid_incoming_request_id_is_echoed(client):
    resp = await client.get("/api/me", headers={"X-Request-ID": "edge-42.a:b_c"})
    body = await problem_of(resp, 401)
    assert body["request_id"] == "edge-42.a:b_c"


@pytest.mark.parametrize(
    "incoming", ["has space", "x" * 65, "semi;colon", "<script>"], ids=str.__len__
)
async def test_invalid_incoming_request_id_is_replaced(client, incoming):
    resp = await client.get("/api/me", headers={"X-Request-ID": incoming})
    body = await problem_of(resp, 401)
    assert body["request_id"] != incoming


# --- errors as problem JSON -------------------------------------------------------------


async def test_unknown_route_is_problem_json(client):
    body = await problem_of(await client.get("/no/such/route"), 404)
    assert body["code"] == "NOT_FOUND"


async def test_unknown_api_route_with_a_token_is_problem_json(client, writer):
    body = await problem_of(await client.get("/api/nothing", headers=writer.headers), 404)
    assert body["code"] == "NOT_FOUND"


async def test_unknown_api_route_without_a_token_is_401(client):
    await problem_of(await client.get("/api/nothing"), 401)


async def test_wrong_method_is_405_problem_json_with_allow(client, writer):
    resp = await client.delete("/api/me", headers=writer.headers)
    body = await problem_of(resp, 405)
    assert body["code"] == "METHOD_NOT_ALLOWED"
    assert "GET" in resp.headers["Allow"]


async def test_body_over_one_mib_is_413_problem_json(client, writer):
    payload = b'{"title": "' + b"x" * MIB + b'"}'
    resp = await client.post(
        "/api/chat/sessions",
        data=payload,
        headers={**writer.headers, "Content-Type": "application/json"},
    )
    body = await problem_of(resp, 413)
    assert body["code"] == "PAYLOAD_TOO_LARGE"


async def test_body_just_under_one_mib_is_read(client, writer):
    payload = b'{"title": "t", "description": "' + b"x" * (MIB - 100) + b'"}'
    resp = await client.post(
        "/api/chat/sessions",
        data=payload,
        headers={**writer.headers, "Content-Type": "application/json"},
    )
    body = await problem_of(resp, 400)  # read and validated: the description is too long
    assert "description" in str(body)


# --- logs ---------------------------------------------------------------------------------


@pytest.fixture
async def served_like_run_py(aiohttp_client, database_url, tmp_path, okta):
    """The app behind the same access logger as ``python run.py``."""
    server = TestServer(create_app(settings_for(tmp_path, database_url, okta)))
    await server.start_server(
        access_log_class=AccessLogger, access_log=logging.getLogger("chatsvc.access")
    )
    return await aiohttp_client(server)


@pytest.fixture
async def no_database(aiohttp_client, tmp_path, okta):
    """The app pointed at a PostgreSQL server that is not there."""
    settings = settings_for(tmp_path, UNREACHABLE_DB, okta, db_timeout=1)
    return await aiohttp_client(create_app(settings))


async def test_no_token_reaches_the_logs(served_like_run_py, okta, caller, caplog):
    client = served_like_run_py
    caplog.set_level(logging.DEBUG)
    writer = caller("writer@example.com", "write")
    nobody = caller("nobody@example.com", "none")
    expired = okta.token("late@example.com", ["Onyx-Writers"], ttl=-3600)
    header, payload, signature = okta.token("mallory@example.com", ["Onyx-Readers"]).split(".")
    forged = f"{header}.{payload}x.{signature}"
    tokens = [writer.token, nobody.token, expired, forged]

    await client.get("/api/me", headers=writer.headers)
    await client.get("/api/me", headers=writer.headers)
    await client.get("/api/chat/sessions", headers=nobody.headers)
    for bad in (expired, forged):
        await client.get("/api/me", headers={"Authorization": f"Bearer {bad}"})
    session = await create_session(client, writer)
    async with client.ws_connect(
        f"/api/chat/sessions/{session['id']}/ws", params={"access_token": writer.token}
    ) as ws:
        assert (await ws.receive_json())["type"] == "connected"
    async with client.ws_connect(
        f"/api/chat/sessions/{session['id']}/ws", params={"access_token": forged}
    ) as ws:
        await ws.receive()

    logged = caplog.text
    assert "event=http" in logged  # the access log was captured
    assert "event=access_denied" in logged
    assert "event=token_rejected" in logged
    for token in tokens:
        _, claims, signature = token.split(".")
        assert claims not in logged
        assert signature not in logged


# --- database failures -----------------------------------------------------------------------

SQL_WORDS = ("SELECT", "INSERT", "UPDATE", "oauth_permissions", "users.", "Traceback", "asyncpg")


async def test_unreachable_database_answers_503_without_sql(no_database, writer):
    resp = await no_database.get("/api/me", headers=writer.headers)
    body = await problem_of(resp, 503)
    assert body["code"] == "SERVICE_UNAVAILABLE"
    text = await resp.text()
    assert not [word for word in SQL_WORDS if word in text]


async def test_database_lost_after_sign_in_answers_503_without_sql(client, writer):
    await client.get("/api/me", headers=writer.headers)  # the principal is now cached
    unreachable = create_async_engine(UNREACHABLE_DB, connect_args={"timeout": 1})
    await client.app[DB_ENGINE].dispose()
    client.app[DB_SESSIONS].configure(bind=unreachable)
    try:
        resp = await client.get("/api/chat/sessions", headers=writer.headers)
        body = await problem_of(resp, 503)
        assert body["code"] == "SERVICE_UNAVAILABLE"
        assert not [word for word in SQL_WORDS if word in await resp.text()]
    finally:
        await unreachable.dispose()


async def test_readyz_reports_the_database_down(no_database):
    resp = await no_database.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert (body["status"], body["database"], body["keys"]) == ("unavailable", "down", "loaded")


async def test_liveness_does_not_depend_on_the_database(no_database):
    assert (await no_database.get("/healthz")).status == 200
