"""Contract section 5, opening a WebSocket: who gets in, who is closed at once
with 1008 and which reason, in the order of section 3, and the ``connected``
frame a member receives first."""

from __future__ import annotations

import base64
import logging
import os
import uuid
from collections.abc import Callable

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Caller, create_session, send_message, sign_in
from tests.ws_helpers import (
    audit_events,
    connect,
    expect_close,
    open_ws,
    permissions_granting,
    ws_path,
)

POLICY = 1008
MESSAGE_TOO_BIG = 1009


# --- refusals ------------------------------------------------------------------


async def test_no_token_is_closed_authentication_required(
    client: TestClient, writer: Caller
) -> None:
    session = await create_session(client, writer)
    ws = await open_ws(client, None, session["id"])
    await expect_close(ws, POLICY, "Authentication required")


@pytest.mark.parametrize(
    "token",
    ["not-a-jwt", "a.b.c", ""],
    ids=["garbage", "three-parts", "empty-bearer"],
)
async def test_invalid_bearer_token_is_closed_authentication_required(
    client: TestClient, writer: Caller, token: str
) -> None:
    session = await create_session(client, writer)
    ws = await client.ws_connect(
        ws_path(session["id"]), headers={"Authorization": f"Bearer {token}"}
    )
    await expect_close(ws, POLICY, "Authentication required")


async def test_invalid_query_token_is_closed_authentication_required(
    client: TestClient, writer: Caller
) -> None:
    session = await create_session(client, writer)
    ws = await client.ws_connect(ws_path(session["id"], access_token="not-a-jwt"))
    await expect_close(ws, POLICY, "Authentication required")


async def test_expired_token_is_closed_authentication_required(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller]
) -> None:
    client = await make_client(jwt_leeway=0)
    owner = caller("owner@example.com", "write")
    session = await create_session(client, owner)
    expired = caller("owner@example.com", "write", ttl=-5)
    ws = await open_ws(client, expired, session["id"])
    await expect_close(ws, POLICY, "Authentication required")


async def test_query_access_token_authenticates(client: TestClient, writer: Caller) -> None:
    session = await create_session(client, writer)
    ws = await client.ws_connect(ws_path(session["id"], access_token=writer.token))
    connected = await ws.receive_json(timeout=5)
    assert connected["type"] == "connected"
    assert connected["user_email"] == writer.email
    await ws.close()


async def test_query_access_token_is_never_logged(
    client: TestClient, writer: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    session = await create_session(client, writer)
    caplog.set_level(logging.DEBUG)
    ws = await client.ws_connect(ws_path(session["id"], access_token=writer.token))
    await ws.receive_json(timeout=5)
    await ws.send_json({"type": "ping"})
    await ws.receive_json(timeout=5)
    await ws.close()
    bad = writer.token[:-4] + "AAAA"
    ws = await client.ws_connect(ws_path(session["id"], access_token=bad))
    await expect_close(ws, POLICY, "Authentication required")

    ours = [r for r in caplog.records if r.name.startswith("chatsvc")]
    assert any("ws_open" in r.getMessage() for r in ours)
    for record in ours:
        message = record.getMessage()
        assert writer.token not in message
        assert bad not in message
        assert writer.token.split(".")[2] not in message


async def test_user_without_level_is_closed_access_denied(
    client: TestClient, writer: Caller, nobody: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    ws = await open_ws(client, nobody, session["id"])
    await expect_close(ws, POLICY, "Access denied")


async def test_view_rule_failure_is_closed_access_denied(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    session = await create_session(client, writer, is_shared=False)
    ws = await open_ws(client, other_writer, session["id"])
    await expect_close(ws, POLICY, "Access denied")


async def test_read_collaborator_of_private_session_is_closed_access_denied(
    client: TestClient, writer: Caller, reader: Caller
) -> None:
    session = await create_session(client, writer, is_shared=False)
    await sign_in(client, reader)
    resp = await client.post(
        f"/api/chat/sessions/{session['id']}/collaborators",
        json={"email": reader.email},
        headers=writer.headers,
    )
    assert resp.status == 201
    ws = await open_ws(client, reader, session["id"])
    await expect_close(ws, POLICY, "Access denied")


async def test_access_denied_close_is_audited_as_ws_connect(
    client: TestClient, writer: Caller, other_writer: Caller, admin: Caller
) -> None:
    session = await create_session(client, writer, is_shared=False)
    me = await sign_in(client, other_writer)
    request_id = "ws-denied-" + uuid.uuid4().hex[:8]
    ws = await client.ws_connect(
        ws_path(session["id"]), headers={**other_writer.headers, "X-Request-ID": request_id}
    )
    await expect_close(ws, POLICY, "Access denied")

    events = await audit_events(client, admin, "ws.connect")
    assert len(events) == 1
    event = events[0]
    assert event["user_id"] == me["id"]
    assert event["user_email"] == other_writer.email
    assert event["permission"] == "write"
    assert event["resource_type"] == "chat_session"
    assert event["resource_id"] == session["id"]
    assert event["reason"] == "Access denied"
    assert event["request_id"] == request_id


async def test_no_level_close_is_audited_as_ws_connect(
    client: TestClient, writer: Caller, nobody: Caller, admin: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    ws = await open_ws(client, nobody, session["id"])
    await expect_close(ws, POLICY, "Access denied")

    events = await audit_events(client, admin, "ws.connect")
    assert [(e["user_email"], e["permission"], e["reason"]) for e in events] == [
        (nobody.email, None, "Access denied")
    ]


async def test_missing_session_is_closed_session_not_found(
    client: TestClient, writer: Caller
) -> None:
    ws = await open_ws(client, writer, str(uuid.uuid4()))
    await expect_close(ws, POLICY, "Session not found")


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"])
async def test_malformed_session_id_is_closed_session_not_found(
    client: TestClient, writer: Caller, bad_id: str
) -> None:
    ws = await open_ws(client, writer, bad_id)
    await expect_close(ws, POLICY, "Session not found")


@pytest.mark.parametrize("since_seq", ["-1", "abc", "1.5", "0x10"])
async def test_bad_since_seq_is_closed_invalid_since_seq(
    client: TestClient, writer: Caller, since_seq: str
) -> None:
    session = await create_session(client, writer)
    ws = await open_ws(client, writer, session["id"], since_seq=since_seq)
    await expect_close(ws, POLICY, "Invalid since_seq")


async def test_refusals_are_not_audited_except_access_denied(
    client: TestClient, writer: Caller, admin: Caller
) -> None:
    session = await create_session(client, writer)
    for who, sid, query in [
        (None, session["id"], {}),
        (writer, str(uuid.uuid4()), {}),
        (writer, session["id"], {"since_seq": "-1"}),
    ]:
        ws = await open_ws(client, who, sid, **query)
        await expect_close(ws, POLICY)
    assert await audit_events(client, admin, "ws.connect") == []


# The checks run in the order of section 3: authentication -> level ->
# validation (since_seq) -> existence -> the view rule.
ORDER = [
    # (who, session, since_seq, reason)
    ("anonymous", "missing", "-1", "Authentication required"),
    ("nobody", "missing", "-1", "Access denied"),
    ("nobody", "malformed", None, "Access denied"),
    ("other", "missing", "-1", "Invalid since_seq"),
    ("other", "malformed", "abc", "Invalid since_seq"),
    ("other", "private", "-1", "Invalid since_seq"),
    ("other", "missing", None, "Session not found"),
    ("other", "private", None, "Access denied"),
]


@pytest.mark.parametrize(("who", "target", "since_seq", "reason"), ORDER)
async def test_first_failing_check_answers(
    client: TestClient,
    writer: Caller,
    other_writer: Caller,
    nobody: Caller,
    who: str,
    target: str,
    since_seq: str | None,
    reason: str,
) -> None:
    session = await create_session(client, writer, is_shared=False)
    callers = {"anonymous": None, "nobody": nobody, "other": other_writer}
    session_ids = {"missing": str(uuid.uuid4()), "malformed": "xyz", "private": session["id"]}
    query = {"since_seq": since_seq} if since_seq is not None else {}
    ws = await open_ws(client, callers[who], session_ids[target], **query)
    await expect_close(ws, POLICY, reason)


async def test_upgrade_response_carries_request_id(client: TestClient, writer: Caller) -> None:
    session = await create_session(client, writer)
    resp = await client.get(
        ws_path(session["id"]),
        headers={
            **writer.headers,
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
            "X-Request-ID": "upgrade-123",
        },
    )
    assert resp.status == 101
    assert resp.headers["X-Request-ID"] == "upgrade-123"
    resp.close()


async def test_refused_upgrade_response_carries_a_generated_request_id(
    client: TestClient, writer: Caller
) -> None:
    resp = await client.get(
        ws_path(str(uuid.uuid4())),
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        },
    )
    assert resp.status == 101
    assert len(resp.headers["X-Request-ID"]) >= 8
    resp.close()


def ping_of_size(size: int) -> str:
    """A ``ping`` frame of exactly ``size`` bytes."""
    overhead = len('{"type":"ping","pad":""}')
    return '{"type":"ping","pad":"' + "x" * (size - overhead) + '"}'


async def test_frame_over_64_kib_closes_with_1009(client: TestClient, writer: Caller) -> None:
    session = await create_session(client, writer)
    ws, _ = await connect(client, writer, session["id"])
    frame = ping_of_size(64 * 1024 + 1)
    assert len(frame.encode()) == 64 * 1024 + 1
    await ws.send_str(frame)
    await expect_close(ws, MESSAGE_TOO_BIG)


async def test_frame_of_exactly_64_kib_is_served(client: TestClient, writer: Caller) -> None:
    session = await create_session(client, writer)
    ws, _ = await connect(client, writer, session["id"])
    frame = ping_of_size(64 * 1024)
    assert len(frame.encode()) == 64 * 1024
    await ws.send_str(frame)
    assert await ws.receive_json(timeout=5) == {"type": "pong"}
    await ws.close()


# --- the connected frame -----------------------------------------------------------


async def test_connected_frame_describes_member_and_session(
    client: TestClient, writer: Caller
) -> None:
    me = await sign_in(client, writer)
    session = await create_session(client, writer)
    await send_message(client, writer, session["id"], "one")
    await send_message(client, writer, session["id"], "two")

    ws, connected = await connect(client, writer, session["id"])
    assert connected == {
        "type": "connected",
        "session_id": session["id"],
        "user_id": me["id"],
        "user_email": writer.email,
        "permission": "write",
        "can_send": True,
        # The owner, a writer: everything but posting system messages.
        "permissions": permissions_granting(
            "view", "send", "update", "share", "delete", "manage_collaborators"
        ),
        "last_seq": 2,
        "online": [{"user_id": me["id"], "user_email": writer.email}],
        "online_count": 1,
    }
    await ws.close()


async def test_connected_frame_of_new_session_has_last_seq_zero(
    client: TestClient, writer: Caller
) -> None:
    session = await create_session(client, writer)
    ws, connected = await connect(client, writer, session["id"])
    assert connected["last_seq"] == 0
    await ws.close()


async def test_read_member_of_shared_session_cannot_send(
    client: TestClient, writer: Caller, reader: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    ws, connected = await connect(client, reader, session["id"])
    assert connected["permission"] == "read"
    assert connected["can_send"] is False
    await ws.close()


@pytest.mark.parametrize(
    ("who", "shared", "collaborator", "permission"),
    [
        ("other", True, False, "write"),
        ("other", False, True, "write"),
        ("admin", False, False, "admin"),
    ],
    ids=["write-on-shared", "write-collaborator-on-private", "admin-on-private"],
)
async def test_members_with_send_right_can_send(
    client: TestClient,
    writer: Caller,
    other_writer: Caller,
    admin: Caller,
    who: str,
    shared: bool,
    collaborator: bool,
    permission: str,
) -> None:
    session = await create_session(client, writer, is_shared=shared)
    member = {"other": other_writer, "admin": admin}[who]
    if collaborator:
        await sign_in(client, member)
        resp = await client.post(
            f"/api/chat/sessions/{session['id']}/collaborators",
            json={"email": member.email},
            headers=writer.headers,
        )
        assert resp.status == 201
    ws, connected = await connect(client, member, session["id"])
    assert connected["permission"] == permission
    assert connected["can_send"] is True
    await ws.close()
