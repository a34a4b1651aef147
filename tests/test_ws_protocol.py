"""Contract section 5, a live connection: message broadcast, idempotent sends,
denials as ``PERMISSION_DENIED`` frames (audited, section 6), bad frames, ping,
typing, presence, and REST changes reaching the sockets."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
from aiohttp.test_utils import TestClient

from chatsvc.keys import HUB
from tests.conftest import Caller, create_session, send_message, sign_in
from tests.ws_helpers import (
    audit_events,
    connect,
    eventually,
    frames_before_pong,
    frames_within,
    next_frame,
    next_presence,
    ping_pong,
    presence_changes,
)

MESSAGE_FIELDS = {
    "type",
    "message_id",
    "seq",
    "content",
    "user_id",
    "user_email",
    "message_type",
    "metadata",
    "client_msg_id",
    "timestamp",
}


async def messages_of(client: TestClient, who: Caller, session_id: str) -> list[dict]:
    resp = await client.get(f"/api/chat/sessions/{session_id}/messages", headers=who.headers)
    assert resp.status == 200
    return await resp.json()


# --- messages ------------------------------------------------------------------------


async def test_message_is_broadcast_to_every_member_including_sender(
    client: TestClient, writer: Caller, other_writer: Caller, reader: Caller
) -> None:
    me = await sign_in(client, writer)
    session = await create_session(client, writer, is_shared=True)
    sender, _ = await connect(client, writer, session["id"])
    others = [(await connect(client, who, session["id"]))[0] for who in (other_writer, reader)]

    await sender.send_json(
        {"type": "message", "content": "hi all", "metadata": {"k": 1}, "client_msg_id": "c-1"}
    )
    copies = [await next_frame(ws, "message") for ws in (sender, *others)]

    assert copies[0] == copies[1] == copies[2]
    frame = copies[0]
    assert set(frame) == MESSAGE_FIELDS
    assert frame["seq"] == 1
    assert frame["content"] == "hi all"
    assert frame["user_id"] == me["id"]
    assert frame["user_email"] == writer.email
    assert frame["message_type"] == "user"
    assert frame["metadata"] == {"k": 1}
    assert frame["client_msg_id"] == "c-1"
    stored = await messages_of(client, writer, session["id"])
    assert [(m["id"], m["seq"], m["created_at"]) for m in stored] == [
        (frame["message_id"], 1, frame["timestamp"])
    ]


async def test_duplicate_client_msg_id_returns_original_to_sender_only(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    sender, _ = await connect(client, writer, session["id"])
    other, _ = await connect(client, other_writer, session["id"])
    await sender.send_json({"type": "message", "content": "first", "client_msg_id": "dup"})
    original = await next_frame(sender, "message")
    assert await next_frame(other, "message") == original

    await sender.send_json({"type": "message", "content": "second", "client_msg_id": "dup"})
    assert await next_frame(sender, "message") == original

    # The other member sees nothing new: its next message frame is the following send.
    await sender.send_json({"type": "message", "content": "third"})
    assert (await next_frame(other, "message"))["content"] == "third"
    stored = await messages_of(client, writer, session["id"])
    assert [m["content"] for m in stored] == ["first", "third"]


async def test_same_client_msg_id_from_another_user_is_a_new_message(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    first, _ = await connect(client, writer, session["id"])
    second, _ = await connect(client, other_writer, session["id"])
    await first.send_json({"type": "message", "content": "a", "client_msg_id": "same"})
    await second.send_json({"type": "message", "content": "b", "client_msg_id": "same"})
    frames = [await next_frame(first, "message"), await next_frame(first, "message")]
    assert sorted(f["seq"] for f in frames) == [1, 2]


async def test_write_user_can_send_to_shared_session_of_another(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    ws, _ = await connect(client, other_writer, session["id"])
    await ws.send_json({"type": "message", "content": "from a guest"})
    frame = await next_frame(ws, "message")
    assert frame["content"] == "from a guest"
    assert frame["user_email"] == other_writer.email


async def test_admin_can_post_system_message(
    client: TestClient, writer: Caller, admin: Caller
) -> None:
    session = await create_session(client, writer)
    ws, _ = await connect(client, admin, session["id"])
    await ws.send_json({"type": "message", "content": "maintenance", "message_type": "system"})
    assert (await next_frame(ws, "message"))["message_type"] == "system"


# --- denials --------------------------------------------------------------------------


async def test_read_member_send_is_denied_and_socket_stays_open(
    client: TestClient, writer: Caller, reader: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    ws, _ = await connect(client, reader, session["id"])
    await ws.send_json({"type": "message", "content": "may I?"})
    assert await next_frame(ws, "error") == {
        "type": "error",
        "code": "PERMISSION_DENIED",
        "message": "Requires write permission",
    }
    await ping_pong(ws)
    assert await messages_of(client, writer, session["id"]) == []


async def test_read_member_send_denial_is_audited_as_ws_send(
    client: TestClient, writer: Caller, reader: Caller, admin: Caller
) -> None:
    me = await sign_in(client, reader)
    session = await create_session(client, writer, is_shared=True)
    ws, _ = await connect(client, reader, session["id"])
    await ws.send_json({"type": "message", "content": "may I?"})
    await next_frame(ws, "error")

    events = await audit_events(client, admin, "ws.send")
    assert len(events) == 1
    event = events[0]
    assert event["user_id"] == me["id"]
    assert event["permission"] == "read"
    assert event["resource_type"] == "chat_session"
    assert event["resource_id"] == session["id"]
    assert event["reason"] == "Requires write permission"
    assert event["request_id"]


async def test_system_message_by_non_admin_is_denied(
    client: TestClient, writer: Caller, admin: Caller
) -> None:
    session = await create_session(client, writer)
    ws, _ = await connect(client, writer, session["id"])
    await ws.send_json({"type": "message", "content": "I am system", "message_type": "system"})
    assert await next_frame(ws, "error") == {
        "type": "error",
        "code": "PERMISSION_DENIED",
        "message": "Only admins can post system messages",
    }
    await ping_pong(ws)
    assert await messages_of(client, writer, session["id"]) == []
    events = await audit_events(client, admin, "ws.send")
    assert [e["reason"] for e in events] == ["Only admins can post system messages"]


async def test_a_read_member_typing_nonsense_is_denied_before_validation(
    client: TestClient, writer: Caller, reader: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    ws, _ = await connect(client, reader, session["id"])
    await ws.send_json({"type": "typing", "is_typing": "yes"})
    assert await next_frame(ws, "error") == {
        "type": "error",
        "code": "PERMISSION_DENIED",
        "message": "Requires write permission",
    }


async def test_typing_by_read_member_is_denied_and_audited_as_ws_typing(
    client: TestClient, writer: Caller, reader: Caller, admin: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    owner, _ = await connect(client, writer, session["id"])
    ws, _ = await connect(client, reader, session["id"])
    await ws.send_json({"type": "typing", "is_typing": True})
    assert await next_frame(ws, "error") == {
        "type": "error",
        "code": "PERMISSION_DENIED",
        "message": "Requires write permission",
    }
    await ping_pong(ws)
    assert [f for f in await frames_within(owner, 0.3) if f["type"] == "typing"] == []
    events = await audit_events(client, admin, "ws.typing")
    assert [(e["user_email"], e["reason"]) for e in events] == [
        (reader.email, "Requires write permission")
    ]


# --- bad frames -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("this is not json", "INVALID_JSON"),
        ("[1, 2, 3]", "INVALID_JSON"),
        ('"a string"', "INVALID_JSON"),
        ("{}", "UNKNOWN_TYPE"),
        ('{"content": "no type"}', "UNKNOWN_TYPE"),
        ('{"type": "shout"}', "UNKNOWN_TYPE"),
        ('{"type": 7}', "UNKNOWN_TYPE"),
        ('{"type": "message", "content": "   "}', "INVALID_CONTENT"),
        ('{"type": "message", "content": ""}', "INVALID_CONTENT"),
        ('{"type": "message"}', "INVALID_CONTENT"),
        ('{"type": "message", "content": "x", "message_type": "robot"}', "INVALID_CONTENT"),
        ('{"type": "message", "content": "' + "x" * 32_001 + '"}', "INVALID_CONTENT"),
        ('{"type": "message", "content": "x", "client_msg_id": ""}', "INVALID_CONTENT"),
        (
            '{"type": "message", "content": "x", "client_msg_id": "' + "c" * 65 + '"}',
            "INVALID_CONTENT",
        ),
        ('{"type": "message", "content": 5}', "INVALID_CONTENT"),
        ('{"type": "typing", "is_typing": "yes"}', "INVALID_CONTENT"),
        ('{"type": "typing"}', "INVALID_CONTENT"),
        ('{"type": ["message"]}', "UNKNOWN_TYPE"),
        ('{"type": {"a": 1}}', "UNKNOWN_TYPE"),
    ],
    ids=[
        "not-json",
        "array",
        "string",
        "empty-object",
        "missing-type",
        "unknown-type",
        "non-string-type",
        "blank-content",
        "empty-content",
        "missing-content",
        "bad-message-type",
        "content-too-long",
        "empty-client-msg-id",
        "client-msg-id-too-long",
        "non-string-content",
        "non-bool-typing",
        "missing-is-typing",
        "list-as-type",
        "object-as-type",
    ],
)
async def test_bad_frame_gets_error_and_socket_stays_open(
    client: TestClient, writer: Caller, raw: str, code: str
) -> None:
    session = await create_session(client, writer)
    ws, _ = await connect(client, writer, session["id"])
    await ws.send_str(raw)
    error = await next_frame(ws, "error")
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    await ping_pong(ws)
    assert await messages_of(client, writer, session["id"]) == []


async def test_binary_frame_gets_invalid_json_and_socket_stays_open(
    client: TestClient, writer: Caller
) -> None:
    session = await create_session(client, writer)
    ws, _ = await connect(client, writer, session["id"])
    await ws.send_bytes(b'{"type": "ping"}')
    assert (await next_frame(ws, "error"))["code"] == "INVALID_JSON"
    await ping_pong(ws)


async def test_ping_gets_pong(client: TestClient, writer: Caller) -> None:
    session = await create_session(client, writer)
    ws, _ = await connect(client, writer, session["id"])
    await ws.send_json({"type": "ping"})
    assert await ws.receive_json(timeout=5) == {"type": "pong"}


async def test_rate_limited_ws_send_gets_error_frame(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller]
) -> None:
    client = await make_client(message_rate=0.01, message_burst=1)
    owner = caller("owner@example.com", "write")
    session = await create_session(client, owner)
    ws, _ = await connect(client, owner, session["id"])
    await ws.send_json({"type": "message", "content": "one"})
    await next_frame(ws, "message")
    await ws.send_json({"type": "message", "content": "two"})
    assert (await next_frame(ws, "error"))["code"] == "RATE_LIMITED"
    await ping_pong(ws)


# --- typing --------------------------------------------------------------------------------


async def test_typing_goes_to_the_others_only(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    me = await sign_in(client, writer)
    session = await create_session(client, writer, is_shared=True)
    typist, _ = await connect(client, writer, session["id"])
    other, _ = await connect(client, other_writer, session["id"])
    await next_presence(typist, "joined")  # other's arrival

    await typist.send_json({"type": "typing", "is_typing": True})
    frame = await next_frame(other, "typing")
    assert frame["user_id"] == me["id"]
    assert frame["user_email"] == writer.email
    assert frame["is_typing"] is True
    assert frame["timestamp"]
    assert [f for f in await frames_before_pong(typist) if f["type"] == "typing"] == []


async def test_repeated_typing_within_window_is_one_frame(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    typist, _ = await connect(client, writer, session["id"])
    other, _ = await connect(client, other_writer, session["id"])
    for _ in range(3):
        await typist.send_json({"type": "typing", "is_typing": True})
    await ping_pong(typist)
    typing = [f for f in await frames_before_pong(other) if f["type"] == "typing"]
    assert [f["is_typing"] for f in typing] == [True]


async def test_typing_flapping_within_a_window_is_one_change_then_the_final_state(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller]
) -> None:
    client = await make_client(typing_coalesce_seconds=0.4)
    owner = caller("owner@example.com", "write")
    guest = caller("guest@example.com", "write")
    session = await create_session(client, owner, is_shared=True)
    typist, _ = await connect(client, owner, session["id"])
    other, _ = await connect(client, guest, session["id"])
    for i in range(300):
        await typist.send_json({"type": "typing", "is_typing": i % 2 == 0})
    await typist.send_json({"type": "typing", "is_typing": False})
    await ping_pong(typist)
    # The first change goes out at once; the flapping after it is not broadcast ...
    assert [f["is_typing"] for f in await frames_before_pong(other) if f["type"] == "typing"] == [
        True
    ]
    # ... and the window's end sends where the user ended up.
    assert (await next_frame(other, "typing", within=2))["is_typing"] is False
    assert [f for f in await frames_within(other, 0.6) if f["type"] == "typing"] == []


async def test_typing_that_ends_where_it_started_sends_nothing_more(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller]
) -> None:
    client = await make_client(typing_coalesce_seconds=0.3)
    owner = caller("owner@example.com", "write")
    guest = caller("guest@example.com", "write")
    session = await create_session(client, owner, is_shared=True)
    typist, _ = await connect(client, owner, session["id"])
    other, _ = await connect(client, guest, session["id"])
    for is_typing in (True, False, True):
        await typist.send_json({"type": "typing", "is_typing": is_typing})
    typing = [f for f in await frames_within(other, 0.8) if f["type"] == "typing"]
    assert [f["is_typing"] for f in typing] == [True]


async def test_typing_after_a_quiet_window_goes_out_at_once(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller]
) -> None:
    client = await make_client(typing_coalesce_seconds=0.2)
    owner = caller("owner@example.com", "write")
    guest = caller("guest@example.com", "write")
    session = await create_session(client, owner, is_shared=True)
    typist, _ = await connect(client, owner, session["id"])
    other, _ = await connect(client, guest, session["id"])
    await typist.send_json({"type": "typing", "is_typing": True})
    assert (await next_frame(other, "typing"))["is_typing"] is True
    await asyncio.sleep(0.3)
    await typist.send_json({"type": "typing", "is_typing": False})
    await ping_pong(typist)
    typing = [f for f in await frames_before_pong(other) if f["type"] == "typing"]
    assert [f["is_typing"] for f in typing] == [False]


async def test_a_typist_who_leaves_stops_typing(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    typist, _ = await connect(client, writer, session["id"])
    other, _ = await connect(client, other_writer, session["id"])
    await typist.send_json({"type": "typing", "is_typing": True})
    assert (await next_frame(other, "typing"))["is_typing"] is True
    await typist.close()
    assert (await next_frame(other, "typing"))["is_typing"] is False


async def test_server_ends_typing_after_timeout(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller]
) -> None:
    client = await make_client(typing_timeout_seconds=0.3)
    owner = caller("owner@example.com", "write")
    guest = caller("guest@example.com", "write")
    session = await create_session(client, owner, is_shared=True)
    typist, _ = await connect(client, owner, session["id"])
    other, _ = await connect(client, guest, session["id"])
    await typist.send_json({"type": "typing", "is_typing": True})
    assert (await next_frame(other, "typing"))["is_typing"] is True
    stop = await next_frame(other, "typing", within=2)
    assert stop["is_typing"] is False
    assert stop["user_email"] == owner.email


async def test_typing_keeps_going_while_renewed_before_timeout(
    make_client: Callable[..., TestClient], caller: Callable[..., Caller]
) -> None:
    client = await make_client(typing_timeout_seconds=0.6)
    owner = caller("owner@example.com", "write")
    guest = caller("guest@example.com", "write")
    session = await create_session(client, owner, is_shared=True)
    typist, _ = await connect(client, owner, session["id"])
    other, _ = await connect(client, guest, session["id"])
    for _ in range(4):
        await typist.send_json({"type": "typing", "is_typing": True})
        await ping_pong(typist)
        await frames_within(typist, 0.2)
    typing = [f for f in await frames_within(other, 0.1) if f["type"] == "typing"]
    assert [f["is_typing"] for f in typing] == [True]


# --- presence -------------------------------------------------------------------------------


async def test_presence_joined_and_left_go_to_the_others(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    guest = await sign_in(client, other_writer)
    session = await create_session(client, writer, is_shared=True)
    owner, _ = await connect(client, writer, session["id"])
    ws, connected = await connect(client, other_writer, session["id"])
    assert connected["online_count"] == 2
    assert {u["user_email"] for u in connected["online"]} == {writer.email, other_writer.email}

    joined = await next_presence(owner, "joined")
    assert joined == [{"user_id": guest["id"], "user_email": other_writer.email}]
    assert presence_changes(await frames_before_pong(ws), "joined") == []

    await ws.close()
    left = await next_presence(owner, "left")
    assert left == [{"user_id": guest["id"], "user_email": other_writer.email}]


async def test_second_socket_of_a_user_is_not_a_second_join(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    owner, _ = await connect(client, writer, session["id"])
    await connect(client, other_writer, session["id"])
    await next_presence(owner, "joined")
    second, connected = await connect(client, other_writer, session["id"])
    assert connected["online_count"] == 2
    await ping_pong(second)
    await asyncio.sleep(0.3)  # a presence window
    assert presence_changes(await frames_before_pong(owner), "joined") == []


async def test_closing_one_of_two_sockets_is_not_a_leave(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    owner, _ = await connect(client, writer, session["id"])
    first, _ = await connect(client, other_writer, session["id"])
    second, _ = await connect(client, other_writer, session["id"])
    await next_presence(owner, "joined")

    await first.close()
    # Wait until the server has let go of the closed socket.
    await eventually(lambda: client.app[HUB].room_size(uuid.UUID(session["id"])) == 2)
    await ping_pong(second)
    await asyncio.sleep(0.3)  # a presence window
    assert presence_changes(await frames_before_pong(owner), "left") == []

    await second.close()
    assert [u["user_email"] for u in await next_presence(owner, "left")] == [other_writer.email]


# --- REST changes reach the sockets ---------------------------------------------------------


async def test_rest_sent_message_reaches_sockets(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    ws, _ = await connect(client, other_writer, session["id"])
    sent = await send_message(client, writer, session["id"], "over REST", client_msg_id="r-1")
    frame = await next_frame(ws, "message")
    assert frame == {
        "type": "message",
        "message_id": sent["id"],
        "seq": sent["seq"],
        "content": "over REST",
        "user_id": sent["user_id"],
        "user_email": writer.email,
        "message_type": "user",
        "metadata": {},
        "client_msg_id": "r-1",
        "timestamp": sent["created_at"],
    }


async def test_rest_duplicate_client_msg_id_broadcasts_nothing(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    ws, _ = await connect(client, other_writer, session["id"])
    await send_message(client, writer, session["id"], "once", client_msg_id="r-1")
    await send_message(client, writer, session["id"], "again", client_msg_id="r-1")
    await send_message(client, writer, session["id"], "next")
    contents = [(await next_frame(ws, "message"))["content"] for _ in range(2)]
    assert contents == ["once", "next"]


async def test_rest_edit_reaches_sockets_as_message_updated(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    sent = await send_message(client, writer, session["id"], "draft")
    ws, _ = await connect(client, other_writer, session["id"])
    resp = await client.put(
        f"/api/chat/messages/{sent['id']}",
        json={"content": "final", "metadata": {"v": 2}},
        headers=writer.headers,
    )
    assert resp.status == 200
    updated = await resp.json()

    frame = await next_frame(ws, "message_updated")
    assert frame == {
        "type": "message_updated",
        "message_id": sent["id"],
        "seq": sent["seq"],
        "content": "final",
        "user_id": sent["user_id"],
        "user_email": writer.email,
        "message_type": "user",
        "metadata": {"v": 2},
        "client_msg_id": None,
        "timestamp": updated["updated_at"],
        "is_edited": True,
    }


async def test_rest_delete_reaches_sockets_as_message_deleted(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    sent = await send_message(client, writer, session["id"], "oops")
    ws, _ = await connect(client, other_writer, session["id"])
    resp = await client.delete(f"/api/chat/messages/{sent['id']}", headers=writer.headers)
    assert resp.status == 204
    assert await next_frame(ws, "message_deleted") == {
        "type": "message_deleted",
        "message_id": sent["id"],
        "seq": sent["seq"],
    }


async def test_session_update_reaches_sockets(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    ws, _ = await connect(client, other_writer, session["id"])
    resp = await client.put(
        f"/api/chat/sessions/{session['id']}",
        json={"title": "Renamed", "description": "new"},
        headers=writer.headers,
    )
    assert resp.status == 200
    updated = await resp.json()
    frame = await next_frame(ws, "session_updated")
    # The session as it is, without the PUT caller's own permissions: each member has its own.
    shared = {key: value for key, value in updated.items() if key != "permissions"}
    assert frame == {"type": "session_updated", "session": shared}
    assert frame["session"]["title"] == "Renamed"


async def test_denied_rest_change_reaches_no_socket(
    client: TestClient, writer: Caller, other_writer: Caller
) -> None:
    session = await create_session(client, writer, is_shared=True)
    ws, _ = await connect(client, writer, session["id"])
    resp = await client.put(
        f"/api/chat/sessions/{session['id']}",
        json={"title": "Hijacked"},
        headers=other_writer.headers,
    )
    assert resp.status == 403
    assert await frames_before_pong(ws) == []


async def test_events_of_another_session_do_not_leak(client: TestClient, writer: Caller) -> None:
    watched = await create_session(client, writer)
    elsewhere = await create_session(client, writer)
    ws, _ = await connect(client, writer, watched["id"])
    await send_message(client, writer, elsewhere["id"], "not for you")
    await send_message(client, writer, watched["id"], "for you")
    assert (await next_frame(ws, "message"))["content"] == "for you"
