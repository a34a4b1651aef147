"""Contract section 4, messages: the body, listing and paging by seq, edits,
deletes and the 404 wording."""

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


MESSAGE_FIELDS = {
    "id",
    "chat_session_id",
    "seq",
    "user_id",
    "user_email",
    "content",
    "message_type",
    "metadata",
    "client_msg_id",
    "is_edited",
    "created_at",
    "updated_at",
}


def is_utc_timestamp(value: str) -> bool:
    return value.endswith(("Z", "+00:00")) and parse_time(value).utcoffset().total_seconds() == 0


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def list_messages(client, who, session_id: str, query: str = "") -> list[dict]:
    resp = await client.get(f"/api/chat/sessions/{session_id}/messages{query}", headers=who.headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


# --- the body ----------------------------------------------------------------


async def test_a_new_message_has_every_contract_field_and_the_defaults(client, writer):
    me = await sign_in(client, writer)
    session = await create_session(client, writer)
    resp = await client.post(
        f"/api/chat/sessions/{session['id']}/messages",
        json={"content": "Hello there"},
        headers=writer.headers,
    )
    assert resp.status == 201
    body = await resp.json()
    assert set(body) == MESSAGE_FIELDS
    assert uuid.UUID(body["id"])
    assert body["chat_session_id"] == session["id"]
    assert body["seq"] == 1
    assert body["user_id"] == me["id"]
    assert body["user_email"] == writer.email
    assert body["content"] == "Hello there"
    assert body["message_type"] == "user"
    assert body["metadata"] == {}
    assert body["client_msg_id"] is None
    assert body["is_edited"] is False
    assert is_utc_timestamp(body["created_at"])
    assert is_utc_timestamp(body["updated_at"])


async def test_a_message_keeps_the_given_fields(client, writer):
    session = await create_session(client, writer)
    given = {
        "content": "Answer: 42 ✓",
        "message_type": "assistant",
        "metadata": {"model": "small", "tokens": [1, 2, 3], "nested": {"ok": True}},
        "client_msg_id": "c-0001",
    }
    sent = await send_message(client, writer, session["id"], **given)
    [listed] = await list_messages(client, writer, session["id"])
    assert listed == sent
    assert {key: sent[key] for key in given} == given


async def test_an_admin_may_post_a_system_message(client, writer, admin):
    session = await create_session(client, writer)
    sent = await send_message(client, admin, session["id"], "Maintenance", message_type="system")
    assert sent["message_type"] == "system"
    assert sent["user_email"] == admin.email


# --- listing and paging --------------------------------------------------------


@pytest.fixture
async def ten_messages(client, writer) -> str:
    session = await create_session(client, writer)
    for n in range(1, 11):
        await send_message(client, writer, session["id"], f"m{n}")
    return session["id"]


PAGES = [
    ("", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
    ("?limit=3", [1, 2, 3]),
    ("?limit=3&offset=2", [3, 4, 5]),
    ("?offset=8", [9, 10]),
    ("?offset=10", []),
    ("?after_seq=4&limit=3", [5, 6, 7]),
    ("?after_seq=8", [9, 10]),
    ("?after_seq=10", []),
    ("?after_seq=0&limit=2", [1, 2]),
    ("?after_seq=4&limit=3&offset=2", [7, 8, 9]),
    # scroll-back: the `limit` just before, still oldest first
    ("?before_seq=8&limit=3", [5, 6, 7]),
    ("?before_seq=3&limit=5", [1, 2]),
    ("?before_seq=1", []),
    ("?before_seq=11", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
    # both: the first `limit` between them; offset applies after the filter
    ("?after_seq=2&before_seq=9", [3, 4, 5, 6, 7, 8]),
    ("?after_seq=2&before_seq=9&limit=3", [3, 4, 5]),
    ("?after_seq=2&before_seq=9&limit=3&offset=2", [5, 6, 7]),
    ("?after_seq=5&before_seq=6", []),
]


async def test_paging_by_limit_offset_and_seq(client, writer, ten_messages, subtests):
    for query, seqs in PAGES:
        with subtests.test(query or "(no query)"):
            page = await list_messages(client, writer, ten_messages, query)
            assert [m["seq"] for m in page] == seqs
            assert [m["content"] for m in page] == [f"m{n}" for n in seqs]


async def test_every_listed_message_has_the_contract_fields(client, writer, ten_messages):
    for message in await list_messages(client, writer, ten_messages):
        assert set(message) == MESSAGE_FIELDS


# --- edit ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [{"content": "edited"}, {"metadata": {"pinned": True}}, {"content": "x", "metadata": {}}],
)
async def test_an_edit_changes_the_given_fields_and_marks_the_message_edited(
    client, writer, change
):
    session = await create_session(client, writer)
    sent = await send_message(client, writer, session["id"], "original", metadata={"a": 1})
    resp = await client.put(f"/api/chat/messages/{sent['id']}", json=change, headers=writer.headers)
    assert resp.status == 200
    body = await resp.json()
    assert set(body) == MESSAGE_FIELDS
    assert body["is_edited"] is True
    assert {**sent, **change, "is_edited": True, "updated_at": body["updated_at"]} == body
    assert parse_time(body["updated_at"]) >= parse_time(sent["created_at"])
    [listed] = await list_messages(client, writer, session["id"])
    assert listed == body


# --- delete ----------------------------------------------------------------------


async def test_a_deleted_message_is_gone_and_leaves_a_gap_in_seq(client, writer):
    session = await create_session(client, writer)
    first = await send_message(client, writer, session["id"], "one")
    middle = await send_message(client, writer, session["id"], "two")
    await send_message(client, writer, session["id"], "three")
    resp = await client.delete(f"/api/chat/messages/{middle['id']}", headers=writer.headers)
    assert resp.status == 204
    assert [m["seq"] for m in await list_messages(client, writer, session["id"])] == [1, 3]
    assert first["seq"] == 1


@pytest.mark.parametrize(("method", "body"), [("PUT", {"content": "x"}), ("DELETE", None)])
async def test_a_deleted_message_cannot_be_changed_again(client, writer, method, body):
    session = await create_session(client, writer)
    sent = await send_message(client, writer, session["id"])
    deleted = await client.delete(f"/api/chat/messages/{sent['id']}", headers=writer.headers)
    assert deleted.status == 204
    resp = await client.request(
        method, f"/api/chat/messages/{sent['id']}", json=body, headers=writer.headers
    )
    assert resp.status == 404
    assert (await resp.json())["detail"] == "Chat message not found"


# --- not found ---------------------------------------------------------------------


async def test_a_missing_or_malformed_message_id_is_not_found(client, writer, subtests):
    for message_id in (str(uuid.uuid4()), "not-a-uuid"):
        for method, body in (("PUT", {"content": "x"}), ("DELETE", None)):
            with subtests.test(method=method, message_id=message_id):
                resp = await client.request(
                    method, f"/api/chat/messages/{message_id}", json=body, headers=writer.headers
                )
                assert resp.status == 404
                assert resp.content_type == "application/problem+json"
                assert (await resp.json())["detail"] == "Chat message not found"
