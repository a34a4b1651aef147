"""Contract section 4, sessions: the body, include_messages, ordering, paging,
updates, deletion and the 404 wording."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from chatsvc.api import routing
from tests.conftest import create_session, send_message, sign_in


@pytest.fixture(autouse=True)
def _verify_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every answer must be what its response model writes (chatsvc.api.models)."""
    monkeypatch.setattr(routing, "VERIFY_ANSWERS", True)


SESSION_FIELDS = {
    "id",
    "title",
    "description",
    "user_id",
    "is_shared",
    "chat_settings",
    "created_at",
    "updated_at",
    "last_seq",
    "permissions",
}


def is_utc_timestamp(value: str) -> bool:
    return value.endswith(("Z", "+00:00")) and parse_time(value).utcoffset().total_seconds() == 0


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def get_json(client, path: str, who) -> object:
    resp = await client.get(path, headers=who.headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


# --- the body ----------------------------------------------------------------


async def test_a_new_session_has_every_contract_field_and_the_defaults(client, writer):
    me = await sign_in(client, writer)
    resp = await client.post("/api/chat/sessions", json={"title": "Plans"}, headers=writer.headers)
    assert resp.status == 201
    body = await resp.json()
    assert set(body) == SESSION_FIELDS
    assert uuid.UUID(body["id"])
    assert body["title"] == "Plans"
    assert body["description"] == ""
    assert body["user_id"] == me["id"]
    assert body["is_shared"] is False
    assert body["chat_settings"] == {}
    assert body["last_seq"] == 0
    assert is_utc_timestamp(body["created_at"])
    assert is_utc_timestamp(body["updated_at"])


async def test_create_stores_the_given_fields(client, writer):
    given = {
        "title": "Plans",
        "description": "for the offsite",
        "is_shared": True,
        "chat_settings": {"model": "small", "temperature": 0.2, "tags": ["a", "b"]},
    }
    created = await create_session(client, writer, **given)
    fetched = await get_json(
        client, f"/api/chat/sessions/{created['id']}?include_messages=false", writer
    )
    for body in (created, fetched):
        assert {key: body[key] for key in given} == given


async def test_get_returns_the_same_session_as_create(client, writer):
    created = await create_session(client, writer, title="Same")
    fetched = await get_json(
        client, f"/api/chat/sessions/{created['id']}?include_messages=false", writer
    )
    assert fetched == created


# --- include_messages ----------------------------------------------------------


async def session_with_messages(client, who, count: int) -> dict:
    session = await create_session(client, who)
    for n in range(1, count + 1):
        await send_message(client, who, session["id"], f"message {n}")
    return session


async def test_single_get_includes_its_messages_oldest_first_by_default(client, writer):
    session = await session_with_messages(client, writer, 7)
    body = await get_json(client, f"/api/chat/sessions/{session['id']}", writer)
    assert set(body) == SESSION_FIELDS | {"messages", "has_more_messages"}
    assert [m["seq"] for m in body["messages"]] == [1, 2, 3, 4, 5, 6, 7]
    assert [m["content"] for m in body["messages"]][-1] == "message 7"
    assert body["has_more_messages"] is False


async def test_single_get_carries_the_newest_100_and_says_older_ones_exist(make_client, caller):
    client = await make_client(message_rate=1000.0, message_burst=1000)
    writer = caller("writer@example.com", "write")
    session = await session_with_messages(client, writer, 130)
    body = await get_json(client, f"/api/chat/sessions/{session['id']}", writer)
    assert [m["seq"] for m in body["messages"]] == list(range(31, 131))
    assert body["has_more_messages"] is True
    older = await get_json(
        client, f"/api/chat/sessions/{session['id']}/messages?before_seq=31&limit=500", writer
    )
    assert [m["seq"] for m in older] == list(range(1, 31))


@pytest.mark.parametrize("query", ["?include_messages=false", "?include_messages=0"])
async def test_single_get_without_messages_has_no_messages_key(client, writer, query):
    session = await session_with_messages(client, writer, 2)
    body = await get_json(client, f"/api/chat/sessions/{session['id']}{query}", writer)
    assert set(body) == SESSION_FIELDS


async def test_list_with_messages_adds_the_five_newest_newest_first(client, writer):
    busy = await session_with_messages(client, writer, 7)
    quiet = await create_session(client, writer, title="quiet")
    body = await get_json(client, "/api/chat/sessions?include_messages=true", writer)
    by_id = {item["id"]: item for item in body}
    assert set(by_id[busy["id"]]) == SESSION_FIELDS | {"recent_messages"}
    assert [m["seq"] for m in by_id[busy["id"]]["recent_messages"]] == [7, 6, 5, 4, 3]
    assert by_id[quiet["id"]]["recent_messages"] == []


@pytest.mark.parametrize("query", ["", "?include_messages=false"])
async def test_list_without_messages_has_no_recent_messages_key(client, writer, query):
    await session_with_messages(client, writer, 2)
    body = await get_json(client, f"/api/chat/sessions{query}", writer)
    assert len(body) == 1
    assert set(body[0]) == SESSION_FIELDS


# --- ordering and paging ---------------------------------------------------------


async def list_ids(client, who, query: str = "") -> list[str]:
    return [item["id"] for item in await get_json(client, f"/api/chat/sessions{query}", who)]


async def test_the_list_is_newest_updated_first(client, writer):
    first = await create_session(client, writer, title="first")
    second = await create_session(client, writer, title="second")
    third = await create_session(client, writer, title="third")
    assert await list_ids(client, writer) == [third["id"], second["id"], first["id"]]


async def test_sending_a_message_moves_its_session_to_the_top(client, writer):
    first = await create_session(client, writer, title="first")
    second = await create_session(client, writer, title="second")
    await send_message(client, writer, first["id"])
    assert await list_ids(client, writer) == [first["id"], second["id"]]


async def test_sending_a_message_moves_updated_at_and_last_seq(client, writer):
    session = await create_session(client, writer)
    await send_message(client, writer, session["id"])
    after = await get_json(
        client, f"/api/chat/sessions/{session['id']}?include_messages=false", writer
    )
    assert parse_time(after["updated_at"]) > parse_time(session["updated_at"])
    assert after["created_at"] == session["created_at"]
    assert after["last_seq"] == 1


async def test_limit_and_offset_page_through_the_list(client, writer):
    created = [await create_session(client, writer, title=f"s{n}") for n in range(5)]
    newest_first = [s["id"] for s in reversed(created)]
    assert await list_ids(client, writer, "?limit=2") == newest_first[:2]
    assert await list_ids(client, writer, "?limit=2&offset=2") == newest_first[2:4]
    assert await list_ids(client, writer, "?limit=2&offset=4") == newest_first[4:]
    assert await list_ids(client, writer, "?offset=5") == []


# --- update ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"title": "New title"},
        {"description": "New description"},
        {"chat_settings": {"model": "large"}},
        {"is_shared": True},
        {"title": "Both", "description": "changed"},
    ],
)
async def test_update_changes_only_the_fields_given(client, writer, change):
    session = await create_session(
        client, writer, title="Old", description="old", chat_settings={"model": "small"}
    )
    resp = await client.put(
        f"/api/chat/sessions/{session['id']}", json=change, headers=writer.headers
    )
    assert resp.status == 200
    body = await resp.json()
    assert set(body) == SESSION_FIELDS
    expected = {**session, **change}
    unchanged = SESSION_FIELDS - {"updated_at"}
    assert {k: body[k] for k in unchanged} == {k: expected[k] for k in unchanged}
    fetched = await get_json(
        client, f"/api/chat/sessions/{session['id']}?include_messages=false", writer
    )
    assert fetched == body


# --- delete ------------------------------------------------------------------------


async def test_delete_answers_204_and_the_session_is_gone(client, writer):
    session = await create_session(client, writer)
    resp = await client.delete(f"/api/chat/sessions/{session['id']}", headers=writer.headers)
    assert resp.status == 204
    assert await resp.read() == b""
    again = await client.get(f"/api/chat/sessions/{session['id']}", headers=writer.headers)
    assert again.status == 404
    assert await list_ids(client, writer) == []


async def test_deleting_a_session_deletes_its_messages(client, writer):
    session = await session_with_messages(client, writer, 2)
    messages = await get_json(client, f"/api/chat/sessions/{session['id']}/messages", writer)
    resp = await client.delete(f"/api/chat/sessions/{session['id']}", headers=writer.headers)
    assert resp.status == 204
    for message in messages:
        edit = await client.put(
            f"/api/chat/messages/{message['id']}",
            json={"content": "still there?"},
            headers=writer.headers,
        )
        assert edit.status == 404
        assert (await edit.json())["detail"] == "Chat message not found"


# --- not found ---------------------------------------------------------------------

MISSING = str(uuid.uuid4())


SESSION_ROUTES = [
    ("GET", "", None),
    ("PUT", "", {"title": "x"}),
    ("DELETE", "", None),
    ("GET", "/messages", None),
    ("POST", "/messages", {"content": "x"}),
    ("GET", "/collaborators", None),
    ("POST", "/collaborators", {"email": "writer@example.com"}),
]


async def test_a_missing_or_malformed_session_id_is_not_found(client, writer, subtests):
    await sign_in(client, writer)
    for session_id in (MISSING, "not-a-uuid"):
        for method, suffix, body in SESSION_ROUTES:
            with subtests.test(route=f"{method} /api/chat/sessions/{{id}}{suffix}", id=session_id):
                resp = await client.request(
                    method,
                    f"/api/chat/sessions/{session_id}{suffix}",
                    json=body,
                    headers=writer.headers,
                )
                assert resp.status == 404
                assert resp.content_type == "application/problem+json"
                problem = await resp.json()
                assert problem["detail"] == "Chat session not found"
                assert problem["status"] == 404
                assert problem["request_id"] == resp.headers["X-Request-ID"]


async def test_recent_messages_are_the_five_newest_that_still_exist(client, writer):
    session = await create_session(client, writer)
    sent = [await send_message(client, writer, session["id"], f"m{i}") for i in range(1, 9)]
    for message in sent[-2:]:  # delete seq 7 and 8
        resp = await client.delete(f"/api/chat/messages/{message['id']}", headers=writer.headers)
        assert resp.status == 204
    other = await create_session(client, writer, title="short")
    await send_message(client, writer, other["id"], "only one")

    resp = await client.get("/api/chat/sessions?include_messages=true", headers=writer.headers)
    by_id = {item["id"]: item for item in await resp.json()}
    assert [m["seq"] for m in by_id[session["id"]]["recent_messages"]] == [6, 5, 4, 3, 2]
    assert [m["content"] for m in by_id[other["id"]]["recent_messages"]] == ["only one"]
