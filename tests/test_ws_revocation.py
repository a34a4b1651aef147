"""Contract section 5, rights that change on a live connection: revocation
(1008 ``Access revoked``, audited as ``ws.revoked``), ``permission_changed``,
token renewal with ``auth``, token expiry and session deletion."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Caller, create_session, sign_in
from tests.ws_helpers import (
    audit_events,
    connect,
    expect_close,
    frames_before_pong,
    frames_within,
    next_frame,
    permissions_granting,
    ping_pong,
)

POLICY = 1008


def token_exp(token: str) -> int:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]


async def add_collaborator(client: TestClient, owner: Caller, session_id: str, who: Caller) -> str:
    user = await sign_in(client, who)
    resp = await client.post(
        f"/api/chat/sessions/{session_id}/collaborators",
        json={"email": who.email},
        headers=owner.headers,
    )
    assert resp.status == 201, await resp.text()
    return user["id"]


async def remove_collaborator(
    client: TestClient, owner: Caller, session_id: str, user_id: str
) -> None:
    resp = await client.delete(
        f"/api/chat/sessions/{session_id}/collaborators/{user_id}", headers=owner.headers
    )
    assert resp.status == 204, await resp.text()


async def set_shared(client: TestClient, owner: Caller, session_id: str, shared: bool) -> None:
    resp = await client.put(
        f"/api/chat/sessions/{session_id}", json={"is_shared": shared}, headers=owner.headers
    )
    assert resp.status == 200, await resp.text()


# --- losing the view right ---------------------------------------------------------


@pytest.mark.parametrize("level", ["read", "write"])
async def test_unsharing_closes_non_owner_member_access_revoked(
    client: TestClient, writer: Caller, caller: Callable[..., Caller], level: str
) -> None:
    session = await create_session(client, writer, is_shared=True)
    guest = caller("guest@example.com", level)
    ws, _ = await connect(client, guest, session["id"])
    await set_shared(client, writer, session["id"], False)
    await expect_close(ws, POLICY, "Access revoked")


async def test_unsharing_revocation_is_audited_as_ws_revoked(
    client: TestClient, writer: Caller, other_writer: Caller, admin: Caller
) -> None:
    guest = await sign_in(client, other_writer)
    session = await create_session(client, writer, is_shared=True)
    ws = await client.ws_connect(
        f"/api/chat/sessions/{session['id']}/ws",
        headers={**other_writer.headers, "X-Request-ID": "guest-upgrade"},
    )
    await next_frame(ws, "connected")
    await set_shared(client, writer, session["id"], False)
    await expect_close(ws, POLICY, "Access revoked")

    events = await audit_events(client, admin, "ws.revoked")
    assert len(events) == 1
    event = events[0]
    assert event["user_id"] == guest["id"]
    assert event["user_email"] == other_writer.email
    assert event["permission"] == "write"
    assert event["resource_type"] == "chat_session"
    assert event["resource_id"] == session["id"]
    assert event["reason"] == "Access revoked"
    assert event["request_id"] == "guest-upgrade"


async def test_unsharing_keeps_owner_collaborator_and_admin(
    client: TestClient,
    writer: Caller,
    other_writer: Caller,
    admin: Caller,
    caller: Callable[..., Caller],
) -> None:
    session = await create_session(client, writer, is_shared=True)
    await add_collaborator(client, writer, session["id"], other_writer)
    stayers = [
        (await connect(client, who, session["id"]))[0] for who in (writer, other_writer, admin)
    ]
    leaver, _ = await connect(client, caller("guest@example.com", "write"), session["id"])

    await set_shared(client, writer, session["id"], False)
    await expect_close(leaver, POLICY, "Access revoked")
    for ws in stayers:
        # Presence frames (coalesced joins and the leaver) may come before or after.
        frames = [f for f in await frames_before_pong(ws) if f["type"] != "presence"]
        assert [f["type"] for f in frames] == ["session_updated"]
        assert frames[0]["session"]["is_shared"] is False


async def test_removing_collaborator_of_private_session_closes_access_revoked(
    client: TestClient, writer: Caller, other_writer: Caller, admin: Caller
) -> None:
    session = await create_session(client, writer, is_shared=False)
    user_id = await add_collaborator(client, writer, session["id"], other_writer)
    ws, connected = await connect(client, other_writer, session["id"])
    assert connected["can_send"] is True

    await remove_collaborator(client, writer, session["id"], user_id)
    await expect_close(ws, POLICY, "Access revoked")
    events = await audit_events(client, admin, "ws.revoked")
    assert [(e["user_id"], e["resource_id"]) for e in events] == [(user_id, session["id"])]


async def test_removing_one_collaborator_leaves_the_others(
    client: TestClient, writer: Caller, other_writer: Caller, caller: Callable[..., Caller]
) -> None:
    session = await create_session(client, writer, is_shared=False)
    third = caller("third@example.com", "write")
    removed_id = await add_collaborator(client, writer, session["id"], other_writer)
    await add_collaborator(client, writer, session["id"], third)
    removed, _ = await connect(client, other_writer, session["id"])
    kept, _ = await connect(client, third, session["id"])

    await remove_collaborator(client, writer, session["id"], removed_id)
    await expect_close(removed, POLICY, "Access revoked")
    await ping_pong(kept)


async def test_removing_collaborator_of_shared_session_only_takes_the_update_right(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    user_id = await add_collaborator(client, writer, session["id"], other_writer)
    ws, connected = await connect(client, other_writer, session["id"])
    assert connected["permissions"]["update"] is True

    await remove_collaborator(client, writer, session["id"], user_id)
    assert await frames_before_pong(ws) == [
        {
            "type": "permission_changed",
            "permission": "write",
            "can_send": True,
            "permissions": permissions_granting("view", "send"),
        }
    ]
    await ws.send_json({"type": "message", "content": "still here"})
    assert (await next_frame(ws, "message"))["content"] == "still here"


# --- renewal with auth -----------------------------------------------------------------


async def test_auth_with_same_sub_answers_auth_ok_with_expiry(
    client: TestClient, writer: Caller, caller: Callable[..., Caller]
) -> None:
    session = await create_session(client, writer)
    ws, _ = await connect(client, writer, session["id"])
    renewal = caller(writer.email, "write", ttl=7200)
    await ws.send_json({"type": "auth", "access_token": renewal.token})
    frame = await next_frame(ws, "auth_ok")
    expected = datetime.fromtimestamp(token_exp(renewal.token), UTC)
    assert set(frame) == {"type", "expires_at"}
    assert datetime.fromisoformat(frame["expires_at"]) == expected
    assert frame["expires_at"].endswith(("Z", "+00:00"))
    assert await frames_before_pong(ws) == []


async def test_auth_with_another_sub_is_invalid_token_and_connection_stays(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    ws, _ = await connect(client, writer, session["id"])
    await ws.send_json({"type": "auth", "access_token": other_writer.token})
    error = await next_frame(ws, "error")
    assert error["code"] == "INVALID_TOKEN"
    await ping_pong(ws)
    # Still the original user.
    await ws.send_json({"type": "message", "content": "who am I"})
    assert (await next_frame(ws, "message"))["user_email"] == writer.email


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "auth", "access_token": "not-a-jwt"},
        {"type": "auth", "access_token": ""},
        {"type": "auth"},
        {"type": "auth", "access_token": 42},
    ],
    ids=["garbage", "empty", "missing", "not-a-string"],
)
async def test_auth_with_bad_token_is_invalid_token_and_connection_stays(
    client: TestClient, writer: Caller, frame: dict
) -> None:
    session = await create_session(client, writer)
    ws, _ = await connect(client, writer, session["id"])
    await ws.send_json(frame)
    assert (await next_frame(ws, "error"))["code"] == "INVALID_TOKEN"
    await ping_pong(ws)


async def test_renewal_with_read_level_on_shared_session_only_loses_send_right(
    client: TestClient, writer: Caller, other_writer: Caller, caller: Callable[..., Caller]
) -> None:
    session = await create_session(client, writer, is_shared=True)
    ws, connected = await connect(client, other_writer, session["id"])
    assert connected["can_send"] is True

    await ws.send_json({"type": "auth", "access_token": caller(other_writer.email, "read").token})
    assert (await ws.receive_json(timeout=5))["type"] == "auth_ok"
    assert await ws.receive_json(timeout=5) == {
        "type": "permission_changed",
        "permission": "read",
        "can_send": False,
        "permissions": permissions_granting("view"),
    }
    await ws.send_json({"type": "message", "content": "still?"})
    assert await next_frame(ws, "error") == {
        "type": "error",
        "code": "PERMISSION_DENIED",
        "message": "Requires write permission",
    }


async def test_renewal_with_write_level_grants_send_right(
    client: TestClient, writer: Caller, reader: Caller, caller: Callable[..., Caller]
) -> None:
    session = await create_session(client, writer, is_shared=True)
    ws, connected = await connect(client, reader, session["id"])
    assert connected["can_send"] is False

    await ws.send_json({"type": "auth", "access_token": caller(reader.email, "write").token})
    await next_frame(ws, "auth_ok")
    assert await next_frame(ws, "permission_changed") == {
        "type": "permission_changed",
        "permission": "write",
        "can_send": True,
        "permissions": permissions_granting("view", "send"),
    }
    await ws.send_json({"type": "message", "content": "now I can"})
    assert (await next_frame(ws, "message"))["content"] == "now I can"


@pytest.mark.parametrize("level", ["read", "none"])
async def test_renewal_that_loses_view_right_closes_access_revoked(
    client: TestClient,
    writer: Caller,
    other_writer: Caller,
    admin: Caller,
    caller: Callable[..., Caller],
    level: str,
) -> None:
    # A write collaborator of a private session: a read (or no) level loses the view.
    session = await create_session(client, writer, is_shared=False)
    await add_collaborator(client, writer, session["id"], other_writer)
    ws, _ = await connect(client, other_writer, session["id"])
    await ws.send_json({"type": "auth", "access_token": caller(other_writer.email, level).token})
    await expect_close(ws, POLICY, "Access revoked")
    events = await audit_events(client, admin, "ws.revoked")
    assert [e["user_email"] for e in events] == [other_writer.email]


async def test_renewal_with_another_sub_keeps_the_old_expiry(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller]
) -> None:
    client = await make_client(jwt_leeway=0)
    owner = caller("owner@example.com", "write", ttl=2)
    session = await create_session(client, owner)
    ws, _ = await connect(client, owner, session["id"])
    await ws.send_json({"type": "auth", "access_token": caller("other@example.com").token})
    assert (await next_frame(ws, "error"))["code"] == "INVALID_TOKEN"
    await expect_close(ws, POLICY, "Token expired", within=5)


# --- expiry -----------------------------------------------------------------------------


async def test_unrenewed_token_closes_token_expired_at_exp(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller]
) -> None:
    client = await make_client(jwt_leeway=0)
    owner = caller("owner@example.com", "write", ttl=2)
    session = await create_session(client, owner)
    ws, _ = await connect(client, owner, session["id"])
    exp = token_exp(owner.token)
    await expect_close(ws, POLICY, "Token expired", within=5)
    assert exp - 0.25 <= time.time() <= exp + 1.0


async def test_token_accepted_within_leeway_closes_token_expired_at_once(
    client: TestClient, caller: Callable[..., Caller]
) -> None:
    # The leeway lets an expired token in; the connection still ends at its exp.
    owner = caller("owner@example.com", "write")
    session = await create_session(client, owner)
    late = caller(owner.email, "write", ttl=-5)
    ws = await client.ws_connect(f"/api/chat/sessions/{session['id']}/ws", headers=late.headers)
    await expect_close(ws, POLICY, "Token expired", within=2)


async def test_renewal_before_expiry_keeps_connection_open(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller]
) -> None:
    client = await make_client(jwt_leeway=0)
    owner = caller("owner@example.com", "write", ttl=2)
    session = await create_session(client, owner)
    ws, _ = await connect(client, owner, session["id"])
    first_exp = token_exp(owner.token)
    await ws.send_json({"type": "auth", "access_token": caller(owner.email, ttl=3600).token})
    await next_frame(ws, "auth_ok")

    assert await frames_within(ws, first_exp + 0.8 - time.time()) == []
    assert time.time() > first_exp + 0.5
    await ping_pong(ws)


async def test_renewal_with_short_token_moves_the_expiry(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller]
) -> None:
    client = await make_client(jwt_leeway=0)
    owner = caller("owner@example.com", "write", ttl=3600)
    session = await create_session(client, owner)
    ws, _ = await connect(client, owner, session["id"])
    short = caller(owner.email, ttl=2)
    await ws.send_json({"type": "auth", "access_token": short.token})
    await next_frame(ws, "auth_ok")
    await expect_close(ws, POLICY, "Token expired", within=5)
    assert time.time() >= token_exp(short.token) - 0.25


# --- session deletion ------------------------------------------------------------------


async def test_session_deletion_sends_session_deleted_then_closes(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    members = [(await connect(client, who, session["id"]))[0] for who in (writer, other_writer)]
    resp = await client.delete(f"/api/chat/sessions/{session['id']}", headers=writer.headers)
    assert resp.status == 204
    for ws in members:
        frames = await expect_close(ws, POLICY, "Session deleted")
        assert frames[-1] == {"type": "session_deleted", "session_id": session["id"]}


async def test_connecting_to_a_deleted_session_is_session_not_found(
    client: TestClient, writer: Caller
) -> None:
    session = await create_session(client, writer)
    resp = await client.delete(f"/api/chat/sessions/{session['id']}", headers=writer.headers)
    assert resp.status == 204
    ws = await client.ws_connect(f"/api/chat/sessions/{session['id']}/ws", headers=writer.headers)
    await expect_close(ws, POLICY, "Session not found")


# --- shutdown ------------------------------------------------------------------------------


async def test_shutdown_closes_sockets_with_1001(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    members = [(await connect(client, who, session["id"]))[0] for who in (writer, other_writer)]
    # Stop the server, not the TestClient: the latter would close the sockets from our side.
    stopping = asyncio.create_task(client.server.close())
    for ws in members:
        await expect_close(ws, 1001)
    await asyncio.wait_for(stopping, 10)
