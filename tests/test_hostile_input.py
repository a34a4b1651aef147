"""Odd values a client may send: each gets a clear answer and nothing breaks
(token time claims on the WebSocket, the send right after a lowering renewal,
edits and deletes under the rate limit)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import text

from chatsvc.app import create_app
from chatsvc.keys import DB_SESSIONS
from tests.conftest import Caller, create_session, send_message, settings_for
from tests.fake_okta import FakeOkta
from tests.ws_helpers import (
    connect,
    expect_close,
    next_frame,
    permissions_granting,
    ping_pong,
    ws_path,
)

HUGE_TIMES = {
    "exp of 10^400": {"exp": 10**400},
    "exp past year 9999": {"exp": 253_402_300_800},
    "nbf past year 9999": {"nbf": 10**20},
}


@pytest.mark.parametrize("claims", HUGE_TIMES.values(), ids=HUGE_TIMES.keys())
async def test_websocket_connect_with_an_absurd_time_claim_is_authentication_required(
    client: TestClient, writer: Caller, okta: FakeOkta, claims: dict[str, int]
) -> None:
    session = await create_session(client, writer)
    token = okta.sign({**okta.claims(writer.email, ["Onyx-Writers"]), **claims})
    ws = await client.ws_connect(ws_path(session["id"], access_token=token))
    await expect_close(ws, 1008, "Authentication required")


@pytest.mark.parametrize("claims", HUGE_TIMES.values(), ids=HUGE_TIMES.keys())
async def test_auth_frame_with_an_absurd_time_claim_is_invalid_token_and_the_socket_stays(
    client: TestClient, writer: Caller, okta: FakeOkta, claims: dict[str, int]
) -> None:
    session = await create_session(client, writer)
    ws, _ = await connect(client, writer, session["id"])
    token = okta.sign({**okta.claims(writer.email, ["Onyx-Writers"]), **claims})
    await ws.send_json({"type": "auth", "access_token": token})
    assert (await next_frame(ws, "error"))["code"] == "INVALID_TOKEN"
    await ping_pong(ws)


async def test_owner_renewed_as_read_is_told_it_cannot_send(
    client: TestClient, writer: Caller, caller: Callable[..., Caller]
) -> None:
    session = await create_session(client, writer)
    ws, connected = await connect(client, writer, session["id"])
    assert connected["can_send"] is True
    await ws.send_json({"type": "auth", "access_token": caller(writer.email, "read").token})
    await next_frame(ws, "auth_ok")
    changed = await next_frame(ws, "permission_changed")
    assert changed == {
        "type": "permission_changed",
        "permission": "read",
        "can_send": False,
        # Still the owner, but the route levels of every change need write.
        "permissions": permissions_granting("view"),
    }
    await ws.send_json({"type": "message", "content": "owner, but read"})
    assert (await next_frame(ws, "error"))["message"] == "Requires write permission"


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_edits_and_deletes_count_against_the_message_rate(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller], method: str
) -> None:
    client = await make_client(message_rate=0.1, message_burst=3)
    writer = caller("writer@example.com", "write")
    session = await create_session(client, writer)
    ids = [(await send_message(client, writer, session["id"], f"m{i}"))["id"] for i in range(2)]
    # Two sends used two of the three tokens: one more change passes, the next is refused.
    first = await client.request(
        method, f"/api/chat/messages/{ids[0]}", json={"content": "edited"}, headers=writer.headers
    )
    assert first.status in (200, 204)
    second = await client.request(
        method, f"/api/chat/messages/{ids[1]}", json={"content": "edited"}, headers=writer.headers
    )
    assert second.status == 429
    assert int(second.headers["Retry-After"]) >= 1
    listed = await client.get(
        f"/api/chat/sessions/{session['id']}/messages", headers=writer.headers
    )
    survivor = next(m for m in await listed.json() if m["id"] == ids[1])
    assert survivor["content"] == "m1" and survivor["is_edited"] is False


# --- nesting: refused before anything is stored, and stored poison reads back -------------


def nested(levels: int) -> dict:
    """A JSON object nested ``levels`` deep (``{}`` is one level)."""
    value: dict = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def nested_text(levels: int) -> str:
    return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)


async def count_rows(client: TestClient, table: str) -> int:
    async with client.app[DB_SESSIONS]() as db:
        return (await db.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()


@pytest.mark.parametrize(
    ("levels", "accepted"), [(31, True), (32, True), (33, False), (253, False), (255, False)]
)
async def test_chat_settings_nesting_limit(
    client: TestClient, writer: Caller, levels: int, accepted: bool
) -> None:
    before = await count_rows(client, "chat_sessions")
    resp = await client.post(
        "/api/chat/sessions",
        data=f'{{"title": "t", "chat_settings": {nested_text(levels)}}}',
        headers={**writer.headers, "Content-Type": "application/json"},
    )
    if accepted:
        assert resp.status == 201
        return
    body = await resp.json()
    assert resp.status == 400, body
    assert body["errors"][0]["field"] == "chat_settings"
    assert "32 levels" in body["errors"][0]["message"]
    assert await count_rows(client, "chat_sessions") == before


@pytest.mark.parametrize(
    ("levels", "accepted"), [(31, True), (33, False), (253, False), (255, False)]
)
async def test_message_metadata_nesting_limit_over_rest_and_websocket(
    client: TestClient, writer: Caller, levels: int, accepted: bool
) -> None:
    session = await create_session(client, writer)
    ws, _ = await connect(client, writer, session["id"])
    resp = await client.post(
        f"/api/chat/sessions/{session['id']}/messages",
        data=f'{{"content": "c", "metadata": {nested_text(levels)}}}',
        headers={**writer.headers, "Content-Type": "application/json"},
    )
    await ws.send_str(f'{{"type": "message", "content": "c", "metadata": {nested_text(levels)}}}')
    if accepted:
        assert resp.status == 201
        assert (await next_frame(ws, "message"))["metadata"] == nested(levels)
        return
    assert resp.status == 400
    assert (await resp.json())["errors"][0]["field"] == "metadata"
    error = await next_frame(ws, "error")
    assert error["code"] == "INVALID_CONTENT" and "metadata" in error["message"]
    await ping_pong(ws)
    assert await count_rows(client, "chat_messages") == 0


async def poison(client: TestClient, table: str, column: str, row_id: str, levels: int) -> None:
    """Write a value the API would refuse straight into the database (data from before the limit)."""
    async with client.app[DB_SESSIONS]() as db:
        cast = "CAST(:v AS JSON)" if db.bind.dialect.name == "postgresql" else ":v"
        await db.execute(
            text(f"UPDATE {table} SET {column} = {cast} WHERE id = :id"),
            {
                "v": nested_text(levels),
                "id": row_id if db.bind.dialect.name == "postgresql" else uuid.UUID(row_id).hex,
            },
        )
        await db.commit()


async def test_stored_poison_breaks_no_read(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    healthy = await create_session(client, writer, is_shared=True, title="healthy")
    message = await send_message(client, writer, session["id"], "deep")
    await send_message(client, writer, session["id"], "after")
    await poison(client, "chat_sessions", "chat_settings", session["id"], 253)
    await poison(client, "chat_messages", "metadata", message["id"], 253)

    for path in (
        "/api/chat/sessions?include_messages=true",
        f"/api/chat/sessions/{session['id']}",
        f"/api/chat/sessions/{session['id']}/messages",
    ):
        resp = await client.get(path, headers=other_writer.headers)
        assert resp.status == 200, (path, await resp.text())
    listed = await (await client.get("/api/chat/sessions", headers=other_writer.headers)).json()
    assert {s["title"] for s in listed} >= {"healthy", session["title"]}
    assert healthy["id"] in {s["id"] for s in listed}

    ws, _ = await connect(client, other_writer, session["id"], since_seq=0)
    replayed = [await next_frame(ws, "message") for _ in range(2)]
    assert [f["content"] for f in replayed] == ["deep", "after"]
    assert replayed[0]["metadata"] == {}


async def test_the_sqlite_file_is_created_readable_by_its_owner_only(
    aiohttp_client: Any, okta: FakeOkta, tmp_path: Path
) -> None:
    path = tmp_path / "fresh" / "chatsvc.db"
    path.parent.mkdir()
    settings = settings_for(tmp_path, f"sqlite+aiosqlite:///{path}", okta)
    client = await aiohttp_client(create_app(settings))
    assert (await client.get("/healthz")).status == 200
    assert path.stat().st_mode & 0o777 == 0o600


async def test_a_socket_closed_at_shutdown_is_logged_with_the_code_sent(
    client: TestClient, writer: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    session = await create_session(client, writer)
    ws, _ = await connect(client, writer, session["id"])
    with caplog.at_level(logging.INFO, logger="chatsvc.realtime"):
        await client.server.close()
    assert ws.close_code == 1001 or (await ws.receive()).data == 1001
    closed = [r.getMessage() for r in caplog.records if "event=ws_closed" in r.getMessage()]
    assert closed and all("code=1001" in line for line in closed), closed


async def test_free_form_json_with_too_many_values_is_refused(
    client: TestClient, writer: Caller
) -> None:
    session = await create_session(client, writer)
    ok = await client.post(
        f"/api/chat/sessions/{session['id']}/messages",
        json={"content": "c", "metadata": {"v": [0] * 4000}},
        headers=writer.headers,
    )
    assert ok.status == 201
    resp = await client.post(
        f"/api/chat/sessions/{session['id']}/messages",
        json={"content": "c", "metadata": {"v": [0] * 5000}},
        headers=writer.headers,
    )
    assert resp.status == 400
    error = (await resp.json())["errors"][0]
    assert error["field"] == "metadata" and "4096 values" in error["message"]


@pytest.mark.parametrize("value", ["--5", "1e3", "%207", "7%20", "+7", "0x10", "٣"])
@pytest.mark.parametrize(
    "route",
    [
        "/api/chat/sessions?limit={v}",
        "/api/chat/sessions?offset={v}",
        "/api/chat/sessions/{sid}/messages?after_seq={v}",
        "/api/chat/sessions/{sid}/messages?before_seq={v}",
        "/api/chat/audit?limit={v}",
    ],
)
async def test_integer_query_parameters_are_plain_decimals(
    client: TestClient, admin: Caller, route: str, value: str
) -> None:
    session = await create_session(client, admin)
    resp = await client.get(route.format(v=value, sid=session["id"]), headers=admin.headers)
    assert resp.status == 400, await resp.text()
    assert "must be an integer" in (await resp.json())["errors"][0]["message"]
