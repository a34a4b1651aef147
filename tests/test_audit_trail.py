"""Contract section 6: every REST denial is one audit event with the right
fields; other failures are not audited; admins read the trail; nothing buffered
is lost at shutdown."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from chatsvc.api import routing
from chatsvc.store.models import AuditEvent
from tests.conftest import Caller, create_session, send_message, sign_in


@pytest.fixture(autouse=True)
def _verify_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every answer must be what its response model writes (chatsvc.api.models)."""
    monkeypatch.setattr(routing, "VERIFY_ANSWERS", True)


AUDIT_FIELDS = {
    "id",
    "occurred_at",
    "user_id",
    "user_email",
    "permission",
    "action",
    "resource_type",
    "resource_id",
    "reason",
    "request_id",
    "client_ip",
    "outcome",
    "hash",
}


async def audit_events(client, admin: Caller, query: str = "limit=500") -> list[dict[str, Any]]:
    resp = await client.get(f"/api/chat/audit?{query}", headers=admin.headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def deny(client, who: Caller, method: str, path: str, body: Any = None) -> str:
    """Make a request that must be denied; return its request id."""
    resp = await client.request(method, path, json=body, headers=who.headers)
    assert resp.status == 403, await resp.text()
    return resp.headers["X-Request-ID"]


@dataclass
class Scene:
    session_id: str  # private, owned by the writer
    message_id: str  # the writer's, in that session


@pytest.fixture
async def scene(client, writer) -> Scene:
    session = await create_session(client, writer)
    message = await send_message(client, writer, session["id"])
    return Scene(session["id"], message["id"])


S = "/api/chat/sessions/{session}"
M = "/api/chat/messages/{message}"

# (who, method, path, body, action, resource_type, resource id ("session", "message" or None), reason)
DENIALS: list[tuple[str, str, str, Any, str, str, str | None, str]] = [
    ("other_writer", "GET", S, None, "session.read", "chat_session", "session",
     "Access denied to chat session"),
    ("other_writer", "GET", S + "/messages", None, "message.list", "chat_session", "session",
     "Access denied to chat session messages"),
    ("other_writer", "PUT", S, {"title": "x"}, "session.update", "chat_session", "session",
     "Can only update your own chat sessions or sessions you collaborate on"),
    ("other_writer", "PUT", S, {"is_shared": True}, "session.share", "chat_session", "session",
     "Only the owner can change sharing"),
    ("other_writer", "DELETE", S, None, "session.delete", "chat_session", "session",
     "Can only delete your own chat sessions"),
    ("other_writer", "POST", S + "/messages", {"content": "x"}, "message.send", "chat_session",
     "session", "Cannot send messages to this chat session"),
    ("writer", "POST", S + "/messages", {"content": "x", "message_type": "system"},
     "message.send", "chat_session", "session", "Only admins can post system messages"),
    ("other_writer", "PUT", M, {"content": "x"}, "message.update", "chat_message", "message",
     "Can only update your own messages"),
    ("other_writer", "DELETE", M, None, "message.delete", "chat_message", "message",
     "Can only delete your own messages"),
    ("other_writer", "GET", S + "/collaborators", None, "collaborator.list", "chat_session",
     "session", "Access denied to chat session"),
    ("other_writer", "POST", S + "/collaborators", {"email": "reader@example.com"},
     "collaborator.add", "chat_session", "session", "Only the owner can manage collaborators"),
    ("other_writer", "DELETE", S + "/collaborators/" + str(uuid.UUID(int=7)), None,
     "collaborator.remove", "chat_session", "session", "Only the owner can manage collaborators"),
    # route-level denials
    ("writer", "GET", "/api/chat/audit", None, "audit.read", "audit", None,
     "Requires admin permission"),
    ("reader", "POST", "/api/chat/sessions", {"title": "x"}, "session.create", "chat_session",
     None, "Requires write permission"),
    ("nobody", "GET", "/api/chat/sessions", None, "session.list", "chat_session", None,
     "Requires read permission"),
    ("reader", "DELETE", M, None, "message.delete", "chat_message", "message",
     "Requires write permission"),
    ("nobody", "GET", S, None, "session.read", "chat_session", "session",
     "Requires read permission"),
]  # fmt: skip


async def test_each_denial_is_one_audit_event_with_the_right_fields(
    client, scene, subtests, writer, other_writer, reader, nobody, admin
):
    callers = {"writer": writer, "other_writer": other_writer, "reader": reader, "nobody": nobody}
    ids = {name: (await sign_in(client, who))["id"] for name, who in callers.items()}
    for who, method, path, body, action, resource_type, resource, reason in DENIALS:
        with subtests.test(who=who, action=action, reason=reason):
            caller = callers[who]
            target = path.format(session=scene.session_id, message=scene.message_id)
            request_id = await deny(client, caller, method, target, body)
            [event] = [
                e for e in await audit_events(client, admin) if e["request_id"] == request_id
            ]
            assert set(event) == AUDIT_FIELDS
            assert uuid.UUID(event["id"])
            assert event["occurred_at"].endswith(("Z", "+00:00"))
            assert datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
            expected_resource = {"session": scene.session_id, "message": scene.message_id}
            assert {k: event[k] for k in AUDIT_FIELDS - {"id", "occurred_at", "hash"}} == {
                "user_id": ids[who],
                "user_email": caller.email,
                "permission": None if caller.level == "none" else caller.level,
                "action": action,
                "resource_type": resource_type,
                "resource_id": expected_resource.get(resource),
                "reason": reason,
                "request_id": request_id,
                "client_ip": "127.0.0.1",
                "outcome": "denied",
            }


async def test_a_denial_is_logged_as_one_structured_line(client, scene, other_writer, caplog):
    with caplog.at_level(logging.WARNING, logger="chatsvc.audit"):
        request_id = await deny(
            client, other_writer, "GET", f"/api/chat/sessions/{scene.session_id}"
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "chatsvc.audit"]
    assert len(lines) == 1
    assert "event=access_denied" in lines[0]
    assert f"request_id={request_id}" in lines[0]
    assert "action=session.read" in lines[0]
    assert other_writer.token not in lines[0]


async def test_failures_that_are_not_denials_are_not_audited(make_client, writer, admin):
    client = await make_client(message_rate=1, message_burst=1)
    session = await create_session(client, writer)
    messages = f"/api/chat/sessions/{session['id']}/messages"
    missing = await client.get(f"/api/chat/sessions/{uuid.uuid4()}", headers=writer.headers)
    invalid = await client.post(messages, json={"content": ""}, headers=writer.headers)
    await send_message(client, writer, session["id"])
    limited = await client.post(messages, json={"content": "again"}, headers=writer.headers)
    no_token = await client.get("/api/chat/sessions")
    assert [r.status for r in (missing, invalid, limited, no_token)] == [404, 400, 429, 401]
    assert await audit_events(client, admin) == []


# --- reading the trail ---------------------------------------------------------


async def test_the_trail_is_newest_first_and_pages(client, scene, other_writer, admin):
    path = f"/api/chat/sessions/{scene.session_id}"
    request_ids = [await deny(client, other_writer, "GET", path) for _ in range(5)]
    newest_first = request_ids[::-1]
    assert [e["request_id"] for e in await audit_events(client, admin)] == newest_first
    pages = [
        [e["request_id"] for e in await audit_events(client, admin, f"limit=2&offset={offset}")]
        for offset in (0, 2, 4)
    ]
    assert pages == [newest_first[:2], newest_first[2:4], newest_first[4:]]


async def test_the_trail_filters_by_user_and_by_action(
    client, scene, writer, other_writer, reader, admin
):
    path = f"/api/chat/sessions/{scene.session_id}"
    other_id = (await sign_in(client, other_writer))["id"]
    read_by_other = await deny(client, other_writer, "GET", path)
    sent_by_other = await deny(client, other_writer, "POST", f"{path}/messages", {"content": "x"})
    read_by_reader = await deny(client, reader, "GET", path)
    created_by_reader = await deny(client, reader, "POST", "/api/chat/sessions", {"title": "x"})

    def request_ids(events: list[dict[str, Any]]) -> set[str]:
        return {e["request_id"] for e in events}

    assert request_ids(await audit_events(client, admin, f"user_id={other_id}")) == {
        read_by_other,
        sent_by_other,
    }
    assert request_ids(await audit_events(client, admin, "action=session.read")) == {
        read_by_other,
        read_by_reader,
    }
    assert request_ids(
        await audit_events(client, admin, f"user_id={other_id}&action=session.read")
    ) == {read_by_other}
    assert request_ids(await audit_events(client, admin, "action=session.create")) == {
        created_by_reader
    }
    assert await audit_events(client, admin, f"user_id={uuid.uuid4()}") == []


# --- buffering and shutdown --------------------------------------------------------


async def stored_request_ids(database_url: str) -> list[str]:
    """Read the audit table with an engine of our own, as another process would."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(select(AuditEvent.request_id))).scalars())
    finally:
        await engine.dispose()


async def test_shutdown_flushes_the_buffered_events(
    make_client, database_url, writer, other_writer
):
    client = await make_client(audit_flush_interval=60)
    session = await create_session(client, writer)
    path = f"/api/chat/sessions/{session['id']}"
    request_ids = [await deny(client, other_writer, "GET", path) for _ in range(3)]
    assert len(await stored_request_ids(database_url)) < 3, "nothing was left in the buffer"
    await client.close()
    assert sorted(await stored_request_ids(database_url)) == sorted(request_ids)


async def test_shutdown_during_a_flush_loses_and_duplicates_nothing(
    make_client, database_url, writer, other_writer
):
    client = await make_client(audit_flush_interval=0.001)
    session = await create_session(client, writer)
    path = f"/api/chat/sessions/{session['id']}"
    request_ids = [await deny(client, other_writer, "GET", path) for _ in range(40)]
    await client.close()
    assert sorted(await stored_request_ids(database_url)) == sorted(request_ids)


async def test_a_denial_on_a_hostile_path_is_stored_with_the_rest_of_its_batch(
    client, reader, writer, admin
):
    """A resource id longer than its column (or not valid Unicode) is stored cut to
    fit: it must not make its batch fail, and be retried, for ever."""
    session = await create_session(client, writer)
    long_id = "x" * 300
    for path in (
        f"/api/chat/messages/{long_id}",
        "/api/chat/messages/%ED%A0%80abc",  # a lone surrogate, percent-encoded
    ):
        resp = await client.delete(path, headers=reader.headers)
        assert resp.status == 403, await resp.text()
    resp = await client.delete(f"/api/chat/sessions/{session['id']}", headers=reader.headers)
    assert resp.status == 403
    events = await audit_events(client, admin, "action=message.delete")
    assert len(events) == 2
    assert {len(e["resource_id"]) for e in events} <= set(range(65))
    assert long_id[:64] in {e["resource_id"] for e in events}
    assert len(await audit_events(client, admin, "action=session.delete")) == 1
